-- The AWS bill as imported (issue 25): Data Exports (CUR 2.0, FOCUS 1.2) deliveries, one row per data file and
-- one per bill line, so later work can match EC2 GPU instance-hours to nodes (by resource id and hour), price
-- them from the bill and reconcile. A billing period of an export is replaced whole when AWS restates it
-- (`bill_files.execution_id` and `etag` say which delivery is stored); see docs/bill.md.
CREATE TABLE bill_files (
    file_id        INTEGER PRIMARY KEY,
    export_name    TEXT NOT NULL,
    billing_period TEXT NOT NULL,
    file_key       TEXT NOT NULL,
    etag           TEXT NOT NULL,
    execution_id   TEXT NOT NULL,
    manifest_key   TEXT NOT NULL,
    schema_name    TEXT NOT NULL,
    line_count     BIGINT NOT NULL,
    imported_ns    BIGINT NOT NULL,
    UNIQUE (export_name, file_key)
);
CREATE INDEX bill_files_period ON bill_files (export_name, billing_period);

-- One row per line of a data file (`row_no` counts data rows from 1). Text columns hold '' where the export has
-- none. Money in nano-dollars (the bill's decimals rounded half away from zero at the ninth), quantities in
-- nano-units; NULL where the export has no such column or the cell is empty.
CREATE TABLE bill_lines (
    file_id             BIGINT NOT NULL REFERENCES bill_files (file_id),
    row_no              BIGINT NOT NULL,
    billing_period      TEXT NOT NULL,
    usage_start_ns      BIGINT NOT NULL,
    usage_end_ns        BIGINT NOT NULL,
    payer_account_id    TEXT NOT NULL,
    usage_account_id    TEXT NOT NULL,
    line_item_type      TEXT NOT NULL,
    product_code        TEXT NOT NULL,
    usage_type          TEXT NOT NULL,
    operation           TEXT NOT NULL,
    resource_id         TEXT NOT NULL,
    instance_type       TEXT NOT NULL,
    region              TEXT NOT NULL,
    availability_zone   TEXT NOT NULL,
    pricing_term        TEXT NOT NULL,
    sku_id              TEXT NOT NULL,
    commitment_id       TEXT NOT NULL,
    currency            TEXT NOT NULL,
    usage_amount_nano   BIGINT,
    unblended_nano      BIGINT,
    public_on_demand_nano BIGINT,
    sp_effective_nano   BIGINT,
    ri_effective_nano   BIGINT,
    net_unblended_nano  BIGINT,
    contracted_nano     BIGINT,
    effective_nano      BIGINT,
    PRIMARY KEY (file_id, row_no)
);
CREATE INDEX bill_lines_resource_hour ON bill_lines (resource_id, usage_start_ns);
CREATE INDEX bill_lines_hour ON bill_lines (usage_start_ns);
