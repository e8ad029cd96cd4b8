-- Prices fetched from AWS (issue 25 item 5): on-demand prices from the AWS Price List API (`price-list`, one per
-- region and instance type; `zone` is '') and spot prices from EC2's spot price history (`spot`, one per
-- Availability Zone and instance type), kept with when they took effect and when they were fetched, so the
-- price book can prefer them over the shipped catalogue and say where a price came from (docs/prices.md).
-- `provenance` is the Price List SKU and offer term code, or the spot price's own timestamp.
CREATE TABLE fetched_prices (
    source          TEXT NOT NULL,
    region          TEXT NOT NULL,
    zone            TEXT NOT NULL,
    instance_type   TEXT NOT NULL,
    effective_ns    BIGINT NOT NULL,
    micros_per_hour BIGINT NOT NULL,
    fetched_ns      BIGINT NOT NULL,
    provenance      TEXT NOT NULL,
    PRIMARY KEY (source, region, zone, instance_type, effective_ns)
);
