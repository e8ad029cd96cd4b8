"""Writes AWS Data Exports deliveries as AWS lays them out, for tests/tests/bill_import.rs.

usage: make_export.py OUT VARIANT   (VARIANT: first, restated, bad-csv, truncated-parquet, focus)

OUT/bills/<export>/data/BILLING_PERIOD=2026-11/<export>-0000N.{snappy.parquet,csv.gz} and
OUT/bills/<export>/metadata/BILLING_PERIOD=2026-11/<export>-Manifest.json, with CUR 2.0's (or FOCUS 1.2's)
column names; Parquet written by pyarrow (snappy, as AWS writes it), CSV by Python's csv and gzip.
"""
import csv, datetime, gzip, io, json, os, sys

import pyarrow as pa
import pyarrow.parquet as pq

out, variant = sys.argv[1], sys.argv[2]
UTC = datetime.timezone.utc
NOV = datetime.datetime(2026, 11, 1, tzinfo=UTC)
H = datetime.timedelta(hours=1)

CUR = ["bill_billing_period_start_date", "bill_payer_account_id", "line_item_usage_account_id",
       "line_item_line_item_type", "line_item_product_code", "line_item_usage_type", "line_item_operation",
       "line_item_resource_id", "product_instance_type", "product_region_code", "line_item_availability_zone",
       "pricing_term", "product_sku", "savings_plan_savings_plan_a_r_n", "reservation_reservation_a_r_n",
       "line_item_currency_code", "line_item_usage_start_date", "line_item_usage_end_date",
       "line_item_usage_amount", "line_item_unblended_cost", "pricing_public_on_demand_cost",
       "savings_plan_savings_plan_effective_cost", "reservation_effective_cost", "line_item_net_unblended_cost"]


def cur_row(hour, kind, resource, itype, term, cost, od, sp=None, ri=None, arn=""):
    start = NOV + hour * H
    usage = ("SpotUsage:" if term == "" else "BoxUsage:") + itype
    return [NOV, "111122223333", "444455556666", kind, "AmazonEC2", usage, "RunInstances", resource, itype,
            "us-east-1", "us-east-1a", term, "SKU1", arn if sp is not None else "", arn if ri is not None else "",
            "USD", start, start + H, 1.0, cost, od, sp, ri, None]


def parquet(path, rows):
    cols = list(zip(*rows))
    arrays = []
    for name, values in zip(CUR, cols):
        if name.endswith("_date"):
            arrays.append(pa.array(values, type=pa.timestamp("ms", tz="UTC")))
        elif name.endswith(("_cost", "_amount")):
            arrays.append(pa.array(values, type=pa.float64()))
        else:
            arrays.append(pa.array(values, type=pa.string()))
    pq.write_table(pa.table(arrays, names=CUR), path, compression="snappy")


def csv_gz(path, header, rows):
    text = io.StringIO()
    w = csv.writer(text)
    w.writerow(header)
    for r in rows:
        w.writerow(["" if v is None else v.strftime("%Y-%m-%dT%H:%M:%S.000Z") if isinstance(v, datetime.datetime)
                    else repr(v) if isinstance(v, float) else v for v in r])
    with gzip.open(path, "wb") as f:
        f.write(text.getvalue().encode())


def deliver(export, execution, files, columns):
    root = os.path.join(out, "bills", export)
    data = os.path.join(root, "data", "BILLING_PERIOD=2026-11")
    meta = os.path.join(root, "metadata", "BILLING_PERIOD=2026-11")
    os.makedirs(data, exist_ok=True)
    os.makedirs(meta, exist_ok=True)
    for f in os.listdir(data):
        os.remove(os.path.join(data, f))
    names = []
    for name, write in files:
        write(os.path.join(data, name))
        names.append(f"s3://bills-bucket/bills/{export}/data/BILLING_PERIOD=2026-11/{name}")
    manifest = {"executionId": execution,
                "exportArn": f"arn:aws:bcm-data-exports:us-east-1:111122223333:export/{export}-0001",
                "billingPeriod": {"start": "2026-11-01T00:00:00.000Z", "end": "2026-12-01T00:00:00.000Z"},
                "columns": [{"name": c, "type": "string"} for c in columns],
                "dataFiles": names, "additionalOutputFiles": []}
    with open(os.path.join(meta, f"{export}-Manifest.json"), "w") as f:
        json.dump(manifest, f)


SP = "arn:aws:savingsplans::111122223333:savingsplan/sp-1"
first_parquet = [cur_row(0, "Usage", "i-0aaa", "p4d.24xlarge", "OnDemand", 32.7726, 32.7726),
                 cur_row(1, "SavingsPlanCoveredUsage", "i-0aaa", "p4d.24xlarge", "OnDemand", 32.7726, 32.7726,
                         sp=21.3021900001, arn=SP)]
first_csv = [cur_row(0, "Usage", "i-0bbb", "g5.xlarge", "", 0.4123456789, 1.006)]

if variant == "first":
    deliver("gpu-cur", "exec-1", [("gpu-cur-00001.snappy.parquet", lambda p: parquet(p, first_parquet)),
                                  ("gpu-cur-00002.csv.gz", lambda p: csv_gz(p, CUR, first_csv))], CUR)
elif variant == "restated":
    deliver("gpu-cur", "exec-2", [("gpu-cur-00001.snappy.parquet",
                                   lambda p: parquet(p, [cur_row(0, "Usage", "i-0aaa", "p4d.24xlarge", "OnDemand",
                                                                 30.0, 32.7726)]))], CUR)
elif variant == "bad-csv":
    bad = cur_row(2, "Usage", "i-0ccc", "g5.xlarge", "OnDemand", 1.006, 1.006)
    rows = first_csv + [bad]
    def write_bad(p):
        csv_gz(p, CUR, rows)
        with gzip.open(p, "rt") as f:
            text = f.read().replace("1.006,1.006", "one dollar,1.006")
        with gzip.open(p, "wb") as f:
            f.write(text.encode())
    deliver("gpu-cur", "exec-3", [("gpu-cur-00001.csv.gz", write_bad)], CUR)
elif variant == "truncated-parquet":
    def write_cut(p):
        parquet(p, first_parquet)
        size = os.path.getsize(p)
        with open(p, "r+b") as f:
            f.truncate(size - 20)
    deliver("gpu-cur", "exec-4", [("gpu-cur-00001.snappy.parquet", write_cut)], CUR)
elif variant == "focus":
    FOCUS = ["BillingPeriodStart", "BillingAccountId", "SubAccountId", "ChargeCategory", "CommitmentDiscountType",
             "CommitmentDiscountStatus", "CommitmentDiscountId", "PricingCategory", "x_ServiceCode", "x_UsageType",
             "x_Operation", "ResourceId", "RegionId", "AvailabilityZone", "SkuId", "BillingCurrency",
             "ChargePeriodStart", "ChargePeriodEnd", "ConsumedQuantity", "BilledCost", "ListCost", "ContractedCost",
             "EffectiveCost"]
    rows = [[NOV, "111122223333", "444455556666", "Usage", "Savings Plan", "Used", SP, "Committed", "AmazonEC2",
             "BoxUsage:p5.48xlarge", "RunInstances",
             "arn:aws:ec2:us-east-1:444455556666:instance/i-0ddd", "us-east-1", "us-east-1b", "SKU5", "USD",
             NOV + 5 * H, NOV + 6 * H, 1.0, 0.0, 55.04, 55.04, 38.5]]
    deliver("gpu-focus", "exec-f1", [("gpu-focus-00001.csv.gz", lambda p: csv_gz(p, FOCUS, rows))], FOCUS)
else:
    sys.exit(f"unknown variant {variant}")
