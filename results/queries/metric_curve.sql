-- One metric over steps for one run (default: the latest run, every metric of its last stage).
-- Parameters: :run (run id, NULL = latest), :key (metric key, NULL = all).
-- sqlite3 results/warmup.sqlite -cmd ".param set :run 3" -cmd ".param set :key 'loss/train'" \
--   < results/queries/metric_curve.sql
SELECT m.stage,
       m.key,
       m.step,
       coalesce(m.value, m.flag) AS value,
       round(m.wall_time - r.started_at, 3) AS seconds
FROM metrics m
JOIN runs r ON r.id = m.run_id
WHERE m.run_id = coalesce(:run, (SELECT max(id) FROM runs))
  AND (:key IS NULL OR m.key = :key)
ORDER BY m.stage, m.key, m.step;
