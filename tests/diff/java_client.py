"""Placeholder filled in below (Java kafka-clients scenarios)."""
class JavaBuildError(Exception):
    pass


class JavaClient:
    def scenario_ids(self):
        return []
