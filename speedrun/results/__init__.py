"""Records and what is made of them: the schema and its reader/writer, statistics, comparisons,
the leaderboard and its renderings, plots, and regression baselines. Nothing here imports torch,
so the record commands start fast."""
