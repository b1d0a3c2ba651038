"""Audit: study logging, access overview, replay, exports and tamper evidence.

Built only from the event log: the worker folds every topic into a hash-chained study log.
"""
