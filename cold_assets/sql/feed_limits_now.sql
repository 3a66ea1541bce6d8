-- The feed's limits in force (feed_limits keeps each change; the newest wins).
SELECT name, argMax(seconds, updated_at) FROM feed_limits GROUP BY name ORDER BY name
