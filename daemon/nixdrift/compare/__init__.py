"""Comparators: one pure function per category, declared + live section -> findings."""
