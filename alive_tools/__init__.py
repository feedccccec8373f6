"""Alive's tooling, outside the runtime core: the ``alive`` CLI, a gRPC client, the embedded
stack launcher (broker, Triton, every service as a process) and a stage test harness.
Nothing in ``alive`` or ``services`` imports it."""
