-- The sampled completions of one run with their rewards (default: the latest run).
-- Parameters: :run (run id, NULL = latest).
SELECT s.stage, s.step, s.example_id, s.reward, s.correct, s.finish_reason,
       substr(replace(s.completion, char(10), ' '), 1, 80) AS completion
FROM samples s
WHERE s.run_id = coalesce(:run, (SELECT max(id) FROM runs))
ORDER BY s.id;
