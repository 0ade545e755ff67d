module goscope.dev/escapes

go 1.21
