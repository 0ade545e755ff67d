module goscope.dev/workloads

go 1.19
