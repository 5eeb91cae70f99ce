"""Hugin: the analytics that turn detections into answers (events, sites, reports, exports).

Pure modules: Arrow tables in, Arrow tables (or files) out. Nothing here imports Dagster, so each
piece is tested on its own and the assets in ``odins_ravne_assets`` stay thin wrappers.
"""
