# Generates json_cases.json: for each input, whether Python's json.loads
# accepts it and, if so, json.dumps(v, indent=2, sort_keys=True).
# Run: python3 gen_json_cases.py > json_cases.json
import json
inputs = [
    '{}', '[]', ' {"a": 1} ', '{"a": 1,}', '[1,]', '[01]', '[1.]', '[.5]', '[-]', '[-0]', '[-0.0]', '[1e5]', '[1E+2]',
    '[1e]', '[1.5e-3]', '[NaN, Infinity, -Infinity]', '[nan]', '[-NaN]', '[inf]', '["\\u00e9\\ud83d\\ude00"]',
    '["a\\/b"]', '["\\x41"]', '["tab\there"]', '["\\t"]', '{"a": 1, "a": 2, "b": 3}', '{"b": 1, "a": {"d": [], "c": {}}}',
    '[true, false, null]', '[True]', '{"a" 1}', '{a: 1}', '"x"', '1', 'null', '[1] [2]', '\ufeff{}', '{"a": [1, [2, [3]]]}',
    '[12345678901234567890123, -12345678901234567890123]', '[1e400, -1e400, 1e-400]', '["\\u0041\\u00"]', '\t\n\r [ ] \n',
    '[\f]', '{"": ""}', '["\u007f\u0080"]', '[0.1, 0.30000000000000004, 100.0, 1e16, 1e15]', '[2.50, 1.000]',
]
cases = []
for s in inputs:
    try:
        v = json.loads(s)
        cases.append({"in": s, "ok": True, "out": json.dumps(v, indent=2, sort_keys=True)})
    except ValueError:
        cases.append({"in": s, "ok": False})
print(json.dumps(cases, indent=1))
