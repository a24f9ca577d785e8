module github.com/lorakit/lorakit

go 1.26.8

require (
	github.com/alecthomas/kong v1.17.0
	github.com/ebitengine/purego v0.11.3
	github.com/klauspost/compress v1.20.4
	github.com/x448/float16 v0.8.4
	golang.org/x/sys v0.50.0
)

require golang.org/x/text v0.44.0
