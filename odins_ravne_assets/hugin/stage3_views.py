"""The Hugin views of the Stage 3 DuckDB database, and the analyst questions they answer.

The Stage 3 builder first creates the contract views (``media``, ``detections``, ``crops``,
``species_labels``, ``events``, ``clusters``) over the Parquet outputs, then runs
:func:`extra_view_statements` to add:

- ``deployments``: the deployments table written by the deployments asset (``hugin.deployments``
  layout) when there is one, else one deployment per camera derived from its media, in the same
  columns (so queries do not care which), from plausible capture times only (no file times).
- ``camera_operation`` (``hugin.effort``): the table the deployments asset writes, one row per camera
  and day; without one (no deployments table either), every day of each deployment, operating.
- ``camera_clock``, ``media_times`` and ``detection_times``: each deployment's clock (offset, drift,
  daylight saving), and the corrected local time and deployment of every media and detection, as
  ``hugin.deployments.apply_clock_offsets`` computes them (a test checks the two agree).
- ``observations``: what an analyst counts, one row per detection (``level = 'media'``, with its
  species label and box) and one per event (``level = 'event'``), with the camera's site.
- ``sites``: one row per site: cameras, centre, trap-nights, animal events, species richness,
  first and last seen.
- ``site_species``: per site and species: events, events per 100 trap-nights, first/last seen.

Trap-nights here are the operating days of ``camera_operation`` (outages left out), summed over a
site's cameras; see ``hugin.sites`` for the same figures computed in Python (the tests check the two
agree). The table macro ``detection_history(species, occasion_days)`` is
``hugin.detection_history`` in SQL: ``SELECT * FROM detection_history('red deer', 7)``.
"""

from __future__ import annotations

DEPLOYMENT_COLUMNS = (
    "camera_id", "deployment_id", "latitude", "longitude", "start", "end", "timezone",
    "clock_offset_s", "clock_offset_end_s", "clock_follows_dst", "max_silence_days", "date_issue",
    "camera_height_m", "bait", "habitat", "source",
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
    NULL::DOUBLE AS clock_offset_end_s,
    false AS clock_follows_dst,
    NULL::DOUBLE AS max_silence_days,
    NULL::VARCHAR AS date_issue,
    NULL::DOUBLE AS camera_height_m,
    NULL::VARCHAR AS bait,
    NULL::VARCHAR AS habitat,
    'media' AS source
FROM media
GROUP BY camera_id
"""

# Media and detections keep the time the camera wrote; deployments say how its clock ran. Per
# deployment: the zone whose daylight saving the camera ignores (an IANA zone, as parse_timezone
# reads one), the zone's UTC offsets at setup and take-down, and the camera's readings then.
_CAMERA_CLOCK = """
SELECT *, epoch(camera_end) - epoch(camera_start) AS camera_span_s
FROM (
    SELECT camera_id, deployment_id, "start", "end", fixed_zone,
           coalesce(clock_offset_s, 0.0) AS offset_start_s,
           clock_offset_end_s AS offset_end_s,
           CASE WHEN fixed_zone IS NULL THEN 0.0 ELSE epoch("start") - epoch(timezone(fixed_zone, "start")) END
               AS zone_start_s,
           CASE WHEN fixed_zone IS NULL THEN 0.0 ELSE epoch("end") - epoch(timezone(fixed_zone, "end")) END
               AS zone_end_s,
           "start" - to_seconds(coalesce(clock_offset_s, 0.0)) AS camera_start,
           "end" - to_seconds(clock_offset_end_s) AS camera_end
    FROM (
        SELECT *, CASE WHEN NOT coalesce(clock_follows_dst, false)
                        AND NOT regexp_full_match(timezone, '(UTC|GMT)?[+-]\\d{1,2}:?(\\d{2})?')
                        AND upper(timezone) NOT IN ('UTC', 'Z', 'GMT') THEN timezone END AS fixed_zone
        FROM deployments
    )
)
"""


def _zone_offset(local: str) -> str:
    return f"(epoch({local}) - epoch(timezone(k.fixed_zone, {local})))"


def _corrected_times(table: str, key: str) -> str:
    """One row per ``table`` row with a time: its corrected local time in the deployment it falls in
    (else the nearest: ``outside``), as ``hugin.deployments.correct_time`` and ``_place`` do."""
    t = 't."timestamp"'
    standard = (f"least({_zone_offset(f'make_timestamp(year({t}), 1, 1, 0, 0, 0)')}, "
                f"{_zone_offset(f'make_timestamp(year({t}), 7, 1, 0, 0, 0)')})")
    first = f"(k.offset_start_s - coalesce(k.zone_start_s, {standard}))"
    last = "(k.offset_end_s - k.zone_end_s)"
    offset = (f"CASE WHEN k.camera_span_s > 0 AND {last} <> {first} "
              f"THEN {first} + ({last} - {first}) * (epoch({t}) - epoch(k.camera_start)) / k.camera_span_s "
              f"ELSE {first} END")
    shifted = f"{t} + to_seconds({offset})"
    fixed = f"CASE WHEN k.fixed_zone IS NULL THEN {shifted} ELSE timezone(k.fixed_zone, timezone('UTC', {shifted})) END"
    return f"""
SELECT camera_id, {key}, "timestamp", deployment_id, distance > 0 AS outside
FROM (
    SELECT camera_id, {key}, fixed AS "timestamp", deployment_id,
           CASE WHEN (k_start IS NULL OR fixed >= k_start) AND (k_end IS NULL OR fixed <= k_end) THEN 0.0
                ELSE least(abs(epoch(fixed) - epoch(k_start)), abs(epoch(fixed) - epoch(k_end))) END AS distance,
           k_start
    FROM (
        SELECT t.camera_id, t.{key}, k.deployment_id, k."start" AS k_start, k."end" AS k_end, {fixed} AS fixed
        FROM {table} t
        JOIN camera_clock k ON k.camera_id = t.camera_id
        WHERE {t} IS NOT NULL
    )
)
QUALIFY row_number() OVER (PARTITION BY camera_id, {key}
                           ORDER BY distance, k_start NULLS FIRST, deployment_id) = 1
"""


# Without a camera_operation table (no deployments asset ran): every day of each deployment counts.
_OPERATION_FROM_DEPLOYMENTS = """
SELECT camera_id, arg_max(deployment_id, effort_days) AS deployment_id, "date", true AS operating,
       sum(effort_days) AS effort_days, 'media' AS source, NULL::VARCHAR AS note
FROM (
    SELECT d.camera_id, d.deployment_id, g.day::DATE AS "date", d."start" = d."end" AS instant,
           (epoch(least(d."end", g.day + INTERVAL 1 DAY)) - epoch(greatest(d."start", g.day))) / 86400.0
               AS effort_days
    FROM deployments d, unnest(generate_series(date_trunc('day', d."start"), d."end", INTERVAL 1 DAY)) AS g(day)
    WHERE d."start" IS NOT NULL AND d."end" IS NOT NULL
)
WHERE effort_days > 0 OR instant
GROUP BY camera_id, "date"
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
    coalesce(o."timestamp", d."timestamp") AS "start",
    coalesce(o."timestamp", d."timestamp") AS "end",
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
LEFT JOIN detection_times o ON o.camera_id = d.camera_id AND o.detection_id = d.detection_id
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
    coalesce(sum(o.effort_days), 0.0) AS trap_nights
FROM clusters c
LEFT JOIN (SELECT camera_id, sum(effort_days) AS effort_days FROM camera_operation GROUP BY camera_id) o
       ON o.camera_id = c.camera_id
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


# hugin.detection_history in SQL: station x occasion, long (one row each; pivot for the matrix).
_DETECTION_HISTORY = """
WITH station_days AS (
    SELECT CASE WHEN station_by = 'camera' THEN o.camera_id ELSE coalesce(c.site_id, o.camera_id) END AS station,
           o."date", bool_or(o.operating) AS operating
    FROM camera_operation o LEFT JOIN clusters c ON c.camera_id = o.camera_id
    GROUP BY ALL
),
setup AS (SELECT station, min("date") AS first_day, max("date") AS last_day FROM station_days GROUP BY station),
grid AS (
    SELECT s.station, unnest(range(1, (SELECT max((last_day - first_day) // occasion_days) + 2 FROM setup)))
        AS occasion
    FROM setup s
),
detected AS (
    SELECT DISTINCT CASE WHEN station_by = 'camera' THEN e.camera_id ELSE coalesce(c.site_id, e.camera_id) END AS station,
           e."start"::DATE AS "date"
    FROM events e LEFT JOIN clusters c ON c.camera_id = e.camera_id
    WHERE e.category = 'animal'
      AND (lower(e.species) = lower(species_name) OR lower(e.scientific_name) = lower(species_name))
      AND e."start" >= TIMESTAMP '2000-01-01' AND e."start" <= now()::TIMESTAMP + INTERVAL 1 DAY
),
per_occasion AS (
    SELECT d.station, (d."date" - s.first_day) // occasion_days + 1 AS occasion,
           count(*) FILTER (WHERE d.operating) AS days_operating,
           count(x."date") FILTER (WHERE d.operating) AS days_detected
    FROM station_days d JOIN setup s USING (station)
    LEFT JOIN detected x ON x.station = d.station AND x."date" = d."date"
    GROUP BY ALL
)
SELECT g.station, g.occasion, coalesce(p.days_operating, 0) AS days_operating,
       CASE WHEN coalesce(p.days_operating, 0) = 0 THEN NULL WHEN p.days_detected > 0 THEN 1 ELSE 0 END AS detected
FROM grid g LEFT JOIN per_occasion p USING (station, occasion)
ORDER BY g.station, g.occasion
"""

# Table macros: signature -> body (for ``build_stage3(macros=...)``).
MACROS = {"detection_history(species_name, occasion_days, station_by := 'site')": _DETECTION_HISTORY}


def extra_views(*, deployments_from_media: bool, operation_from_deployments: bool | None = None) -> dict[str, str]:
    """``name -> SELECT`` of the Hugin views, in creation order (for ``build_stage3(extra_views=...)``).

    ``deployments_from_media``: True derives ``deployments`` from ``media`` (no deployments table
    written); False means the builder already made a ``deployments`` view over the Parquet that the
    deployments asset writes, so it is not redefined here. ``operation_from_deployments`` (default:
    the same as ``deployments_from_media``) likewise derives ``camera_operation``, which the
    deployments asset writes beside its deployments.
    """
    views = {"deployments": _DEPLOYMENTS_FROM_MEDIA} if deployments_from_media else {}
    if deployments_from_media if operation_from_deployments is None else operation_from_deployments:
        views["camera_operation"] = _OPERATION_FROM_DEPLOYMENTS
    views.update({"camera_clock": _CAMERA_CLOCK, "media_times": _corrected_times("media", "file_path"),
                  "detection_times": _corrected_times("detections", "detection_id"),
                  "observations": _OBSERVATIONS, "site_effort": _SITE_EFFORT,
                  "sites": _SITES, "site_species": _SITE_SPECIES})
    return views


def extra_view_statements(
    *, deployments_parquet: str | None = None, camera_operation_parquet: str | None = None,
    materialize_observations: bool = False,
) -> list[str]:
    """The same views as complete SQL statements, for a builder that runs SQL directly.

    ``deployments_parquet``: a path or glob DuckDB can read (``.../deployments/*.parquet``) holding the
    deployments table; None derives deployments from ``media``. ``camera_operation_parquet`` the same
    for ``camera_operation``; None derives it from the deployments. Paths are quoted here; pass a path
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
    if camera_operation_parquet is not None:
        quoted = camera_operation_parquet.replace("'", "''")
        statements.append(f"CREATE OR REPLACE VIEW camera_operation AS SELECT * FROM read_parquet('{quoted}')")
    views = extra_views(deployments_from_media=deployments_parquet is None,
                        operation_from_deployments=camera_operation_parquet is None)
    for name, select in views.items():
        kind = "TABLE" if (name == "observations" and materialize_observations) else "VIEW"
        statements.append(f'CREATE OR REPLACE {kind} "{name}" AS {select}')
    statements.extend(f"CREATE OR REPLACE MACRO {signature} AS TABLE {body}" for signature, body in MACROS.items())
    return statements


EXTRA_VIEWS = ("deployments", "camera_operation", "camera_clock", "media_times", "detection_times", "observations",
               "site_effort", "sites", "site_species")

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
       count(*) FILTER (WHERE t.outside) AS outside_deployment
FROM media m
LEFT JOIN media_times t ON t.camera_id = m.camera_id AND t.file_path = m.file_path
GROUP BY m.camera_id
ORDER BY failed DESC, outside_deployment DESC, m.camera_id
""",
    ),
}
