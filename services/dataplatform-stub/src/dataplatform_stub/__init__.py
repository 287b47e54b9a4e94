"""dataplatform-stub: a stand-in for the external data platform, for local runs and tests."""
