"""Leaderboard evaluation with lm-evaluation-harness: suites, offline twins, runner and averages."""
