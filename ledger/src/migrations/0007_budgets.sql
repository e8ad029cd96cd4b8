-- Budgets (from the API or the config file), one alert state per budget, threshold and period that has
-- been in ALARM, and the outbox of notifications still to deliver (a row per event and notifier).
CREATE TABLE budgets (
    name       TEXT PRIMARY KEY,
    spec       TEXT NOT NULL,
    source     TEXT NOT NULL,
    updated_ns BIGINT NOT NULL
);

CREATE TABLE budget_alerts (
    budget    TEXT NOT NULL,
    threshold TEXT NOT NULL,
    period    TEXT NOT NULL,
    alarm     INTEGER NOT NULL,
    since_ns  BIGINT NOT NULL,
    PRIMARY KEY (budget, threshold, period)
);

CREATE TABLE notifications (
    id              INTEGER PRIMARY KEY,
    notifier        TEXT NOT NULL,
    event           TEXT NOT NULL,
    created_ns      BIGINT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_ns BIGINT NOT NULL,
    last_error      TEXT,
    delivered_ns    BIGINT
);
CREATE INDEX notifications_due ON notifications (delivered_ns, next_attempt_ns);
