-- The history of alerts, for the dashboard's alerts page and `GET /api/v1/alerts`: one row each time an
-- alert fires, closed when it resolves (`budget_alerts` keeps only the latest state per budget, threshold
-- and period). `kind` says what raised it (`budget` now; idle-GPU and anomaly alerts later), `alert_key`
-- which alert of that kind it is (`<budget>/<threshold>/<period>`), `labels` a JSON object describing it.
-- Each notification names the alert it tells of, so the page shows where it was sent and whether it got there.
CREATE TABLE alerts (
    id          INTEGER PRIMARY KEY,
    kind        TEXT NOT NULL,
    alert_key   TEXT NOT NULL,
    subject     TEXT NOT NULL,
    labels      TEXT NOT NULL,
    summary     TEXT NOT NULL,
    fired_ns    BIGINT NOT NULL,
    resolved_ns BIGINT,
    resolution  TEXT
);
CREATE INDEX alerts_open ON alerts (kind, alert_key, resolved_ns);
CREATE INDEX alerts_fired ON alerts (fired_ns);

ALTER TABLE notifications ADD COLUMN alert_id BIGINT;
CREATE INDEX notifications_alert ON notifications (alert_id);

-- Budget alarms in force when this ran fired at their `since_ns` (names, thresholds and periods hold no
-- character JSON escapes: budget names are letters, digits, '.', '_' and '-').
INSERT INTO alerts (kind, alert_key, subject, labels, summary, fired_ns)
SELECT 'budget', budget || '/' || threshold || '/' || period, budget,
       '{"budget":"' || budget || '","period":"' || period || '","threshold":"' || threshold || '"}',
       threshold || ' threshold crossed', since_ns
FROM budget_alerts WHERE alarm = 1;
