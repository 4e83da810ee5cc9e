"""The leaderboard: verified submissions of results files, a terminal table and a static page."""
