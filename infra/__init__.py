"""The Pulumi program of mlops-stack (run by `pulumi up` with `main: infra/`)."""
