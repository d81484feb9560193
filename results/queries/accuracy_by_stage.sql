-- Accuracy (and mean reward) per task and stage across all finished runs, newest first.
-- sqlite3 results/warmup.sqlite < results/queries/accuracy_by_stage.sql
SELECT r.id                                   AS run,
       e.name                                 AS experiment,
       m.stage                                AS stage,
       substr(m.key, 6, length(m.key) - 14)   AS task,
       round(m.value, 4)                      AS accuracy,
       (SELECT round(value, 4) FROM metrics x
         WHERE x.run_id = m.run_id AND x.stage = m.stage
           AND x.key = replace(m.key, '/accuracy', '/reward_mean')
         ORDER BY x.step DESC LIMIT 1)        AS reward_mean
FROM metrics m
JOIN runs r        ON r.id = m.run_id
JOIN experiments e ON e.id = r.experiment_id
WHERE r.status = 'finished'
  AND m.key LIKE 'eval/%/accuracy'
  AND m.step = (SELECT max(step) FROM metrics y
                 WHERE y.run_id = m.run_id AND y.stage = m.stage AND y.key = m.key)
ORDER BY r.id DESC, m.stage, task;
