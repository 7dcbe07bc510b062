"""The restaurant back office: one sub-package per business domain."""
