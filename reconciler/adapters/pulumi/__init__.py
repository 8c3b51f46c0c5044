"""The Pulumi adapter: runs each stack step in a worker process through the Automation API.

`runner` (the StackRunner port: fence, time limits, abort) → `pool` (the worker processes and how they end) →
`worker` (one step: `up` or `destroy`) → `provider` (the long-lived Kubernetes provider and its relay);
`failures` maps what a step reports to the error tree, `locks` deletes stale update locks (`s3` for an `s3://`
backend), `settings` says where Pulumi keeps its state, and `compat` holds every use of Pulumi's private API.
"""
