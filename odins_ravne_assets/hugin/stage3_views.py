"""The Hugin views of the Stage 3 DuckDB database, and the analyst questions they answer.

The Stage 3 builder first creates the contract views (``media``, ``detections``, ``crops``,
``species_labels``, ``events``, ``clusters``) over the Parquet outputs, then runs
:func:`extra_view_statements` to add:

- ``deployments``: the deployments table written by the deployments asset (``hugin.deployments``
  layout) when there is one, else one deployment per camera derived from its media, in the same
  columns (so queries do not care which), from plausible capture times only (no file times).
- ``observations``: what an analyst counts, one row per detection (``level = 'media'``, with its
  species label and box) and one per event (``level = 'event'``), with the camera's site.
- ``sites``: one row per site: cameras, centre, trap-nights, animal events, species richness,
  first and last seen.
- ``site_species``: per site and species: events, events per 100 trap-nights, first/last seen.

Trap-nights here are deployment days (end - start), summed over a site's cameras; see
``hugin.sites`` for the same figures computed in Python (the tests check the two agree).
"""

from __future__ import annotations

DEPLOYMENT_COLUMNS = (
    "camera_id", "deployment_id", "latitude", "longitude", "start", "end", "timezone",
    "clock_offset_s", "camera_height_m", "bait", "habitat", "source",
)

_DEPLOYMENTS_FROM_MEDIA = """
SELECT
    camera_id,
    camera_id AS deployment_id,
    median(latitude) FILTER (WHERE status = 'ok' AND gps_status = 'ok') AS latitude,
    median(longitude) FILTER (WHERE status = 'ok' AND gps_status = 'ok') AS longitude,
    min("timestamp") FILTER (WHERE status = 'ok' AND timestamp_source IS DISTINCT FROM 'file_mtime'
                             AND "timestamp" >= TIMESTAMP '2000-01-01'
                             AND "timestamp" <= now()::TIMESTAMP + INTERVAL 1 DAY) AS "start",
    max("timestamp") FILTER (WHERE status = 'ok' AND timestamp_source IS DISTINCT FROM 'file_mtime'
                             AND "timestamp" >= TIMESTAMP '2000-01-01'
                             AND "timestamp" <= now()::TIMESTAMP + INTERVAL 1 DAY) AS "end",
    NULL::VARCHAR AS timezone,
    0.0::DOUBLE AS clock_offset_s,
    NULL::DOUBLE AS camera_height_m,
    NULL::VARCHAR AS bait,
    NULL::VARCHAR AS habitat,
    'media' AS source
FROM media
GROUP BY camera_id
"""

# Media and detections keep the time the camera wrote; deployments say how far its clock was off.
# One offset per camera: a camera moved between deployments with different offsets gets the first.
_CAMERA_CLOCK = """
SELECT camera_id, arg_min(clock_offset_s, "start") AS clock_offset_s
FROM deployments
GROUP BY camera_id
"""

_OBSERVATIONS = """
SELECT
    d.camera_id,
    c.site_id,
    'media' AS level,
    d.detection_id AS observation_id,
    NULL::VARCHAR AS event_id,
    d.file_path,
    d.frame_number,
    d."timestamp" + to_seconds(coalesce(o.clock_offset_s, 0)) AS "start",
    d."timestamp" + to_seconds(coalesce(o.clock_offset_s, 0)) AS "end",
    d.category,
    coalesce(s.species, CASE d.category WHEN 'person' THEN 'human' WHEN 'vehicle' THEN 'vehicle' ELSE d.label END)
        AS species,
    coalesce(s.scientific_name, CASE WHEN d.category = 'person' THEN 'Homo sapiens' END) AS scientific_name,
    1 AS count,
    d.conf,
    s.score AS species_score,
    d.bbox_x, d.bbox_y, d.bbox_w, d.bbox_h
FROM detections d
LEFT JOIN species_labels s ON s.camera_id = d.camera_id AND s.detection_id = d.detection_id
LEFT JOIN clusters c ON c.camera_id = d.camera_id
LEFT JOIN camera_clock o ON o.camera_id = d.camera_id
-- A suppressed repeat detection (a rock in many triggers: gpu_ops.repeat_detections) is no observation.
WHERE NOT EXISTS (SELECT 1 FROM (SELECT camera_id, unnest(detection_ids) AS detection_id
                                 FROM repeat_detections WHERE suppressed) r
                  WHERE r.camera_id = d.camera_id AND r.detection_id = d.detection_id)
UNION ALL BY NAME
SELECT
    e.camera_id,
    c.site_id,
    'event' AS level,
    e.event_id AS observation_id,
    e.event_id,
    e.representative_file_path AS file_path,
    NULL::INTEGER AS frame_number,
    e."start",
    e."end",
    e.category,
    e.species,
    e.scientific_name,
    e.max_count AS count,
    e.best_conf AS conf,
    NULL::FLOAT AS species_score,
    NULL::FLOAT AS bbox_x, NULL::FLOAT AS bbox_y, NULL::FLOAT AS bbox_w, NULL::FLOAT AS bbox_h
FROM events e
LEFT JOIN clusters c ON c.camera_id = e.camera_id
"""

_SITE_EFFORT = """
SELECT
    c.site_id,
    any_value(c.status) AS status,
    any_value(c.cluster_id) AS cluster_id,
    count(DISTINCT c.camera_id) AS n_cameras,
    string_agg(DISTINCT c.camera_id, ',' ORDER BY c.camera_id) AS camera_ids,
    avg(c.latitude) AS latitude,
    avg(c.longitude) AS longitude,
    coalesce(sum(epoch(dep."end") - epoch(dep."start")) / 86400.0, 0.0) AS trap_nights
FROM clusters c
LEFT JOIN deployments dep ON dep.camera_id = c.camera_id
GROUP BY c.site_id
"""

_SITES = """
SELECT
    f.site_id, f.status, f.cluster_id, f.n_cameras, f.camera_ids, f.latitude, f.longitude, f.trap_nights,
    count(e.event_id) AS n_animal_events,
    count(DISTINCT e.species) AS species_richness,
    min(e."start") AS first_seen,
    max(e."start") AS last_seen
FROM site_effort f
LEFT JOIN clusters c ON c.site_id = f.site_id
LEFT JOIN events e ON e.camera_id = c.camera_id AND e.category = 'animal'
GROUP BY ALL
"""

_SITE_SPECIES = """
SELECT
    c.site_id,
    e.species,
    any_value(e.scientific_name) AS scientific_name,
    count(*) AS n_events,
    max(e.max_count) AS n_individuals_max,
    any_value(f.trap_nights) AS trap_nights,
    CASE WHEN any_value(f.trap_nights) > 0 THEN 100.0 * count(*) / any_value(f.trap_nights) END
        AS events_per_100_trap_nights,
    min(e."start") AS first_seen,
    max(e."start") AS last_seen
FROM events e
JOIN clusters c ON c.camera_id = e.camera_id
JOIN site_effort f ON f.site_id = c.site_id
WHERE e.category = 'animal'
GROUP BY c.site_id, e.species
"""


def extra_views(*, deployments_from_media: bool) -> dict[str, str]:
    """``name -> SELECT`` of the Hugin views, in creation order (for ``build_stage3(extra_views=...)``).

    ``deployments_from_media``: True derives ``deployments`` from ``media`` (no deployments table
    written); False means the builder already made a ``deployments`` view over the Parquet that the
    deployments asset writes, so it is not redefined here.
    """
    views = {"deployments": _DEPLOYMENTS_FROM_MEDIA} if deployments_from_media else {}
    views.update({"camera_clock": _CAMERA_CLOCK, "observations": _OBSERVATIONS, "site_effort": _SITE_EFFORT,
                  "sites": _SITES, "site_species": _SITE_SPECIES})
    return views


def extra_view_statements(
    *, deployments_parquet: str | None = None, materialize_observations: bool = False
) -> list[str]:
    """The same views as complete SQL statements, for a builder that runs SQL directly.

    ``deployments_parquet``: a path or glob DuckDB can read (``.../deployments/*.parquet``) holding the
    deployments table; None derives deployments from ``media``. Paths are quoted here; pass a path
    the builder controls, not user text.

    ``materialize_observations``: store ``observations`` as a table in the database file instead of
    a view. The view joins every detection to its species label at query time, which costs seconds
    at ten million detections; the table pays that once per Stage 3 build (measured in
    ``bench/hugin_query.py``). A table is a snapshot: rebuild Stage 3 after new results, as the
    pipeline does after every run. Run against a fresh database file: DuckDB cannot replace a view
    by a table of the same name or back.
    """
    statements = []
    if deployments_parquet is not None:
        quoted = deployments_parquet.replace("'", "''")
        columns = ", ".join(f'"{c}"' for c in DEPLOYMENT_COLUMNS)
        statements.append(f"CREATE OR REPLACE VIEW deployments AS SELECT {columns} FROM read_parquet('{quoted}')")
    for name, select in extra_views(deployments_from_media=deployments_parquet is None).items():
        kind = "TABLE" if (name == "observations" and materialize_observations) else "VIEW"
        statements.append(f'CREATE OR REPLACE {kind} "{name}" AS {select}')
    return statements


EXTRA_VIEWS = ("deployments", "camera_clock", "observations", "site_effort", "sites", "site_species")

# Five questions analysts ask of a camera-trap survey, answered against the views above.
ANALYST_QUERIES: dict[str, tuple[str, str]] = {
    "detection_rate": (
        "Which species are seen most often per unit of effort at each site?",
        """
SELECT site_id, species, n_events, round(trap_nights, 1) AS trap_nights,
       round(events_per_100_trap_nights, 2) AS per_100_trap_nights
FROM site_species
ORDER BY site_id, per_100_trap_nights DESC NULLS LAST, species
""",
    ),
    "activity_by_hour": (
        "When in the day is each species active (events by hour of day)?",
        """
SELECT species, hour("start") AS hour, count(*) AS events
FROM events
WHERE category = 'animal' AND "start" IS NOT NULL
GROUP BY ALL
ORDER BY species, hour
""",
    ),
    "species_by_site_by_month": (
        "How many detections of each species were there per site and month?",
        """
SELECT site_id, species, date_trunc('month', "start") AS month, count(*) AS detections,
       count(DISTINCT camera_id) AS cameras, round(avg(conf), 3) AS mean_conf
FROM observations
WHERE level = 'media' AND category = 'animal' AND conf >= 0.3
GROUP BY ALL
ORDER BY site_id, species, month
""",
    ),
    "people_and_animals": (
        "At which cameras do people pass within a day of an animal (disturbance)?",
        """
SELECT a.camera_id, a.species, count(*) AS animal_events_near_people
FROM events a
JOIN events p ON p.camera_id = a.camera_id AND p.category = 'person'
             AND abs(epoch(p."start") - epoch(a."start")) <= 86400
WHERE a.category = 'animal'
GROUP BY ALL
ORDER BY animal_events_near_people DESC, a.camera_id, a.species
""",
    ),
    "camera_health": (
        "Which cameras have failed files or timestamps outside their deployment?",
        """
SELECT m.camera_id,
       count(*) AS media,
       count(*) FILTER (WHERE m.status <> 'ok') AS failed,
       count(*) FILTER (WHERE m."timestamp" IS NULL) AS no_timestamp,
       count(*) FILTER (WHERE m."timestamp" + to_seconds(coalesce(o.clock_offset_s, 0)) NOT BETWEEN d."start" AND d."end")
           AS outside_deployment
FROM media m
LEFT JOIN (SELECT camera_id, min("start") AS "start", max("end") AS "end" FROM deployments GROUP BY camera_id) d
       ON d.camera_id = m.camera_id
LEFT JOIN camera_clock o ON o.camera_id = m.camera_id
GROUP BY m.camera_id
ORDER BY failed DESC, outside_deployment DESC, m.camera_id
""",
    ),
}
