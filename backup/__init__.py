"""Backups you can trust: pgBackRest runner, archive checks, restore verification, replica rebuilds, jobs."""
