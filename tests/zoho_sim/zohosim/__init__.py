"""A Zoho CRM stand-in for tests and demos, written with the standard library.

The package is split by idea: ``ztime`` and ``clock`` keep time, ``auth``
issues and checks OAuth tokens, ``store`` and ``fields`` hold records,
``criteria`` and ``coql`` filter them, ``records_api`` and ``watch`` answer the
REST calls, ``limits`` and ``faults`` make the server misbehave on purpose,
``control`` is the test-only API and ``server`` is the HTTP front door.
"""
