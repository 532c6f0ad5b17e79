"""Terminal UI tests (a package, so the tests can share the FakeRuntime from conftest)."""
