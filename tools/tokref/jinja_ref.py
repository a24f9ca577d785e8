#!/usr/bin/env python3
"""Render the Jinja cases of pkg/tokenizer/internal/jinja with Python's Jinja2,
configured as transformers configures it for chat templates, and write the
golden file:

    python3 tools/tokref/jinja_ref.py > pkg/tokenizer/internal/jinja/testdata/cases.json
    python3 tools/tokref/jinja_ref.py --check-chat pkg/tokenizer/testdata [--write]

Needs only jinja2 (transformers itself is not imported). transformers uses
ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
extensions=[loopcontrols]), replaces tojson with json.dumps(ensure_ascii=False,
...) and adds raise_exception; this script does the same.
"""
import json
import sys

import jinja2
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

CASES = [
    # text and whitespace control
    ("plain text", {}),
    ("a\n{% if true %}\nb\n{% endif %}\nc", {}),
    ("a\n  {% if true %}\n  b\n  {% endif %}\nc\n", {}),
    ("a  {%- if true -%}  b  {%- endif -%}  c", {}),
    ("x {{ 1 }} {{- 2 -}} {{ 3 }}\n", {}),
    ("  {{ 'v' }}\n  {# c #}\n  x", {}),
    ("{% for i in [1,2] %}\n  {{ i }}\n{% endfor %}", {}),
    ("{%+ if true %}\n  x{% endif %}", {}),
    ("a\r\nb\rc", {}),
    ("{% raw %}{{ not }}{% endraw %}", {}),
    ("{#- c -#}   x", {}),
    # values and printing
    ("{{ none }} {{ true }} {{ 1.0 }} {{ 1e20 }} {{ 0.0001 }} {{ 1e-5 }} {{ 3 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 2 ** 10 }}", {}),
    ("{{ [1, 'a', none, true, 2.5] }} {{ {'a': 1, 'b': [2]} }} {{ ('x', 1) }}", {}),
    ("{{ \"it's\" }} {{ ['it\\'s', \"q\\\"\", '\\n', 'é', '\\u00a0'] }}", {}),
    ("{{ 'a' ~ 1 ~ none ~ undefined_var }}|{{ undefined_var }}|", {}),
    ("{{ 'abc'[1] }}{{ 'abcdef'[1:4] }}{{ 'abcdef'[::-1] }}{{ [1,2,3][-1] }}{{ [1,2,3,4][1:] }}{{ 'héllo'[1:3] }}", {}),
    ("{{ x.y }}|{{ x['y'] }}|{{ x.z is defined }}|{{ x.get('z', 'd') }}|{{ x.get('y') }}", {"x": {"y": "Y"}}),
    ("{{ 'a' if false }}|{{ 'a' if true else 'b' }}|{{ 1 if none else 2 }}", {}),
    ("{{ 1 < 2 < 3 }} {{ 1 == 1.0 }} {{ 'a' < 'b' }} {{ [1,2] == [1,2] }} {{ 'b' in 'abc' }} {{ 2 not in [1] }} {{ 'k' in {'k': 1} }}", {}),
    ("{{ true and 'x' }}|{{ false or 'y' }}|{{ none or 0 }}|{{ not '' }}|{{ -3 }}|{{ +3 }}", {}),
    ("{{ 'ab' * 3 }}{{ [0] * 2 }}{{ [1] + [2] }}{{ 1 + 2.5 }}", {}),
    # statements
    ("{% set x = 1 %}{% if x == 1 %}one{% elif x == 2 %}two{% else %}other{% endif %}", {}),
    ("{% set a, b = 1, 2 %}{{ a }}{{ b }}", {}),
    ("{% set x %}block {{ 1 }}{% endset %}[{{ x }}]", {}),
    ("{% for i in range(5) %}{% if i == 1 %}{% continue %}{% endif %}{% if i == 3 %}{% break %}{% endif %}{{ i }}{% endfor %}", {}),
    ("{% for i in [] %}x{% else %}empty{% endfor %}", {}),
    ("{% for k, v in d.items() %}{{ loop.index }}{{ k }}={{ v }}{{ ',' if not loop.last }}{% endfor %}", {"d": {"b": 1, "a": 2}}),
    ("{% for x in xs %}{{ loop.index0 }}{{ loop.revindex }}{{ loop.first }}{{ loop.last }}{{ loop.length }}{{ loop.previtem }}{{ loop.nextitem }}{{ loop.cycle('a','b') }};{% endfor %}", {"xs": ["p", "q", "r"]}),
    ("{% for x in xs if x > 1 %}{{ loop.index }}:{{ x }} {% endfor %}", {"xs": [1, 2, 3]}),
    ("{% set x = 0 %}{% for i in [1,2] %}{% set x = x + i %}{{ x }}{% endfor %}|{{ x }}", {}),
    ("{% set ns = namespace(n=0, s='') %}{% for i in [1,2,3] %}{% set ns.n = ns.n + i %}{% endfor %}{{ ns.n }}", {}),
    ("{% for k in d %}{{ k }}{% endfor %}{% for c in 'ab' %}[{{ c }}]{% endfor %}", {"d": {"z": 1, "y": 2}}),
    ("{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}{{ greet('a') }} {{ greet('b', punct='?') }}", {}),
    ("{% filter upper %}abc{{ 'd' }}{% endfilter %}", {}),
    # filters
    ("[{{ '  a b  ' | trim }}][{{ 'xxaxx' | trim('x') }}][{{ none | trim }}]", {}),
    ("{{ 'hello world' | title }} {{ 'hELLO' | capitalize }} {{ 'a' | upper }} {{ 'B' | lower }} {{ 'aXa' | replace('a', 'b') }}", {}),
    ("{{ [1,2,3] | length }} {{ 'héllo' | length }} {{ {'a': 1} | length }} {{ xs | count }} {{ undefined_var | length }}", {"xs": [1]}),
    ("{{ [1,2,3] | join(', ') }} {{ [1,2,3] | first }} {{ [1,2,3] | last }} {{ 'abc' | list }} {{ [3,1,2] | sort }} {{ [3,1,2] | sort(reverse=true) }}", {}),
    ("{{ ['b','A','a'] | sort }} {{ ['b','A','a'] | unique | list }} {{ [1,2,1] | reverse | list }} {{ [1,2,3] | sum }} {{ [2,1] | min }} {{ [2,1] | max }}", {}),
    ("{{ xs | map(attribute='n') | list }} {{ xs | selectattr('n', 'equalto', 2) | list }} {{ xs | rejectattr('n', 'gt', 1) | list }} {{ [0,1,2] | select | list }} {{ [1,2,3] | select('odd') | list }} {{ ['a','b'] | map('upper') | join }}", {"xs": [{"n": 1}, {"n": 2}]}),
    ("{{ undefined_var | default('d') }} {{ '' | default('e', true) }} {{ 0 | d('z') }} {{ '3' | int }} {{ 'x' | int }} {{ '2.5' | float }} {{ -3 | abs }} {{ 2.567 | round(2) }} {{ 42 | string }}", {}),
    ("{{ d | tojson }}|{{ d | tojson(indent=2) }}|{{ 'é\"\\n' | tojson }}|{{ [1.5, none, true] | tojson }}|{{ {} | tojson }}|{{ [] | tojson(indent=4) }}", {"d": {"b": [1, {"c": "x"}], "a": None}}),
    ("{{ d | tojson(sort_keys=true) }}|{{ d | tojson(separators=(',', ':')) }}", {"d": {"b": 1, "a": 2}}),
    ("{{ d | items | list }} {{ d | dictsort }}", {"d": {"b": 1, "a": 2}}),
    ("{{ 'a\nb\n\nc' | indent(2) }}|{{ 'a\nb' | indent(2, true) }}|{{ 'x' | wordcount }}", {}),
    ("{{ '<a>' | e }}{{ '<b>' | safe }}", {}),
    # tests
    ("{{ x is defined }} {{ y is undefined }} {{ none is none }} {{ 1 is number }} {{ 1 is integer }} {{ 1.0 is float }} {{ 'a' is string }} {{ {} is mapping }} {{ [] is iterable }} {{ 'a' is iterable }} {{ 3 is odd }} {{ 4 is even }} {{ 9 is divisibleby 3 }} {{ 'a' is in 'abc' }} {{ true is boolean }} {{ 1 is sameas 1 }} {{ 'abc' is lower }}", {"x": 1}),
    ("{{ 1 is eq 1 }} {{ 1 is ne 2 }} {{ 1 is lt 2 }} {{ 1 is ge 1 }} {{ x is not none }}", {"x": 1}),
    # strings
    ("{{ '  a  '.strip() }}|{{ 'xax'.strip('x') }}|{{ ' a'.lstrip() }}|{{ 'a '.rstrip() }}|{{ 'a,b,,c'.split(',') }}|{{ ' a  b '.split() }}|{{ 'a b c'.split(' ', 1) }}", {}),
    ("{{ 'abc'.startswith('a') }} {{ 'abc'.endswith(('x', 'c')) }} {{ 'aXb'.upper() }} {{ 'AB'.lower() }} {{ 'hello world'.title() }} {{ 'a-b'.replace('-', '+') }} {{ 'abcb'.find('b') }} {{ 'abcb'.count('b') }} {{ ','.join(['a', 'b']) }}", {}),
    ("{{ '12'.isdigit() }} {{ 'ab'.isalpha() }} {{ ' '.isspace() }} {{ 'a\nb'.splitlines() }}", {}),
    # chat-template idioms
    ("{{ messages[0]['content'] | trim }}{% set messages = messages[1:] %}{{ messages | length }}", {"messages": [{"role": "system", "content": " S "}, {"role": "user", "content": "u"}]}),
    ("{% if messages[0].role == 'system' %}{{ messages[0].content }}{% endif %}{% for m in messages %}{{ '<|' + m['role'] + '|>' + m['content'] }}{% endfor %}", {"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]}),
    ("{{ 'tool_calls' in m }} {{ m.content is string }} {{ m.content is mapping }} {{ m.content is iterable }}", {"m": {"role": "tool", "content": "x"}}),
    ("{{ dict(a=1, b='x') }} {{ dict(a=1) | tojson }}", {}),
    ("{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}{{ add_generation_prompt }}", {}),
    ("{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate') }}{% endif %}{{ message['content'] }}{% endfor %}", {"bos_token": "<s>", "messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}),
    # errors
    ("{{ raise_exception('boom') }}", {}),
    ("{{ 'a' + 1 }}", {}),
    ("{{ undefined_var.attr }}", {}),
    ("{{ undefined_var + 'x' }}", {}),
    ("{{ [].append(1) }}", {}),
    ("{% for %}", {}),
    ("{{ 1 + }}", {}),
    ("{% if x %}", {}),
]


def raise_exception(msg):
    raise jinja2.exceptions.TemplateError(msg)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def make_env():
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    return env


CHAT_FILES = ["llama3_chat.json", "qwen_chat.json", "gemma3_chat.json", "phi3_chat.json"]


def render_chat(env, template, row):
    kw = dict(row.get("options", {}))
    variables = dict(row.get("special_tokens") or {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"})
    variables.update(messages=row["messages"], tools=kw.pop("tools", None), documents=None,
                     add_generation_prompt=kw.pop("add_generation_prompt", False))
    variables.update(kw)
    return env.from_string(template).render(**variables)


def check_chat(testdata, write):
    """Render the golden conversations of testdata (made by transformers.js)
    with Python's Jinja2, as transformers renders them, and report the rows
    where the two differ. With write, such rows get "python_rendered" (or
    "python_error"): Python's rendering is the one the Go tests expect there,
    since it is what transformers (and training with it) produces."""
    import os
    env = make_env()
    total = bad = 0
    for name in CHAT_FILES:
        path = os.path.join(testdata, name)
        rows = json.load(open(path, encoding="utf-8"))
        templates = {}
        for i, r in enumerate(rows):
            t = r["template"]
            if t not in templates:
                templates[t] = open(os.path.join(testdata, t + "_chat_template.jinja"), encoding="utf-8").read()
            r.pop("python_rendered", None)
            r.pop("python_error", None)
            try:
                out, err = render_chat(env, templates[t], r), None
            except Exception as e:  # noqa: BLE001 - the template's own errors
                out, err = None, "%s: %s" % (type(e).__name__, e)
            total += 1
            if err is not None and "error" in r:
                continue
            if err is None and out == r.get("rendered"):
                continue
            bad += 1
            print("%s row %d (%s): transformers.js %r, Python %r" % (name, i, t, r.get("rendered", r.get("error")), out if err is None else err), file=sys.stderr)
            if err is None:
                r["python_rendered"] = out
            else:
                r["python_error"] = err
        if write:
            with open(path, "w", encoding="utf-8") as f:
                f.write("[\n" + ",\n".join(json.dumps(r, ensure_ascii=False, separators=(",", ":")) for r in rows) + "\n]\n")
    print("%d conversations, %d differ" % (total, bad), file=sys.stderr)
    return 0 if write or not bad else 1


def main():
    if len(sys.argv) in (3, 4) and sys.argv[1] == "--check-chat":
        sys.exit(check_chat(sys.argv[2], sys.argv[3:] == ["--write"]))
    env = make_env()
    out = []
    for src, variables in CASES:
        row = {"template": src, "vars": variables}
        try:
            row["output"] = env.from_string(src).render(**variables)
        except Exception as e:  # noqa: BLE001 - any failure is an expected error
            row["error"] = type(e).__name__
        out.append(row)
    sys.stdout.write("[\n" + ",\n".join(json.dumps(r, ensure_ascii=False) for r in out) + "\n]\n")


if __name__ == "__main__":
    main()
