"""A stand-in for DataOps TestGen, built into a wheel by the test suite.

Same surface as the real package where the installer touches it: `testgen standalone-setup` reads
username and password (twice) from stdin and writes config.env; `quick-start`; `run-app` starts a
PostgreSQL-like child in its own session and serves the UI health URL and the API's health and
OAuth endpoints (PKCE required, 302 with a code on success, 401 on a wrong password, 500 over plain
HTTP for any host but localhost and 127.0.0.1, as authlib refuses it);
`upgrade-system-version`; `fake-set-password USER` (new password on stdin) changes a password the
way TestGen's UI does. Faults are injected with FAKE_TESTGEN_* environment variables.
"""
