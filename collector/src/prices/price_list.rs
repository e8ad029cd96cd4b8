//! The AWS Price List API's answer to `GetProducts` (service code AmazonEC2): each `PriceList` entry is a
//! JSON document (a string) with the product's attributes and its terms. We ask with the filters
//! instanceType, regionCode, operatingSystem=Linux, tenancy=Shared, preInstalledSw=NA and capacitystatus=Used
//! and take the one on-demand term's hourly USD rate; a document that does not match those filters is refused
//! by name, never priced from (a Windows or dedicated price taken for a Linux node would be silently wrong).

use super::{usd_to_micros, utc_ns};
use gpucost_ledger::fetched_prices::{FetchedPrice, PriceSource};
use serde::Deserialize;
use std::collections::BTreeMap;

/// The attributes each document must carry, as the request filtered on them.
pub const REQUIRED: [(&str, &str); 4] =
    [("operatingSystem", "Linux"), ("tenancy", "Shared"), ("preInstalledSw", "NA"), ("capacitystatus", "Used")];

#[derive(Deserialize)]
struct Document {
    product: Product,
    terms: Terms,
}

#[derive(Deserialize)]
struct Product {
    sku: String,
    attributes: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct Terms {
    #[serde(rename = "OnDemand", default)]
    on_demand: BTreeMap<String, Term>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Term {
    effective_date: String,
    offer_term_code: String,
    price_dimensions: BTreeMap<String, Dimension>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Dimension {
    unit: String,
    rate_code: String,
    price_per_unit: BTreeMap<String, String>,
}

/// The on-demand price in one `PriceList` document, fetched at `fetched_ns`.
pub fn parse_document(json: &str, fetched_ns: u64) -> Result<FetchedPrice, String> {
    let doc: Document =
        serde_json::from_str(json).map_err(|e| format!("a Price List document that is not AmazonEC2's: {e}"))?;
    let attr = |k: &str| doc.product.attributes.get(k).map(String::as_str).unwrap_or("");
    let sku = &doc.product.sku;
    let (instance_type, region) = (attr("instanceType"), attr("regionCode"));
    if instance_type.is_empty() || region.is_empty() {
        return Err(format!("Price List SKU {sku}: no instanceType or regionCode"));
    }
    for (key, want) in REQUIRED {
        if attr(key) != want {
            return Err(format!(
                "Price List SKU {sku} ({instance_type}, {region}): {key} is {:?}, not {want:?}",
                attr(key)
            ));
        }
    }
    let mut terms = doc.terms.on_demand.values();
    let (Some(term), None) = (terms.next(), terms.next()) else {
        return Err(format!("Price List SKU {sku} ({instance_type}, {region}): not exactly one on-demand term"));
    };
    let mut hourly = term.price_dimensions.values().filter(|d| d.unit == "Hrs");
    let (Some(dim), None) = (hourly.next(), hourly.next()) else {
        return Err(format!("Price List SKU {sku} ({instance_type}, {region}): not exactly one hourly rate"));
    };
    let usd =
        dim.price_per_unit.get("USD").ok_or_else(|| format!("Price List rate {}: no USD price", dim.rate_code))?;
    Ok(FetchedPrice {
        source: PriceSource::PriceList,
        region: region.into(),
        zone: String::new(),
        instance_type: instance_type.into(),
        effective_ns: utc_ns(&term.effective_date).map_err(|e| format!("Price List rate {}: {e}", dim.rate_code))?,
        micros_per_hour: usd_to_micros(usd).map_err(|e| format!("Price List rate {}: {e}", dim.rate_code))?,
        fetched_ns,
        provenance: format!("{} (offer term {})", dim.rate_code, term.offer_term_code),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A document in the shape GetProducts returns (trimmed of attributes we do not read).
    pub(crate) fn document(instance_type: &str, os: &str, usd: &str) -> String {
        serde_json::json!({
            "product": {
                "productFamily": "Compute Instance",
                "attributes": {
                    "instanceType": instance_type, "regionCode": "us-east-1", "location": "US East (N. Virginia)",
                    "operatingSystem": os, "tenancy": "Shared", "preInstalledSw": "NA", "capacitystatus": "Used"
                },
                "sku": "QNYZZQZP7Y8CJNMM"
            },
            "serviceCode": "AmazonEC2",
            "terms": {"OnDemand": {"QNYZZQZP7Y8CJNMM.JRTCKXETXF": {
                "priceDimensions": {"QNYZZQZP7Y8CJNMM.JRTCKXETXF.6YS6EN2CT7": {
                    "unit": "Hrs", "endRange": "Inf", "beginRange": "0", "appliesTo": [],
                    "description": "On Demand Linux", "rateCode": "QNYZZQZP7Y8CJNMM.JRTCKXETXF.6YS6EN2CT7",
                    "pricePerUnit": {"USD": usd}
                }},
                "sku": "QNYZZQZP7Y8CJNMM", "effectiveDate": "2025-06-01T00:00:00Z",
                "offerTermCode": "JRTCKXETXF", "termAttributes": {}
            }}},
            "version": "20250601000000", "publicationDate": "2025-06-01T00:00:00Z"
        })
        .to_string()
    }

    #[test]
    fn the_on_demand_hourly_rate_is_taken_with_its_sku_and_offer_term() {
        let p = parse_document(&document("p5.48xlarge", "Linux", "55.0400000000"), 7).unwrap();
        assert_eq!(
            (p.source, p.region.as_str(), p.zone.as_str(), p.instance_type.as_str()),
            (PriceSource::PriceList, "us-east-1", "", "p5.48xlarge")
        );
        assert_eq!((p.micros_per_hour, p.fetched_ns), (55_040_000, 7));
        assert_eq!(p.effective_ns, utc_ns("2025-06-01T00:00:00Z").unwrap());
        assert_eq!(p.provenance, "QNYZZQZP7Y8CJNMM.JRTCKXETXF.6YS6EN2CT7 (offer term JRTCKXETXF)");
    }

    #[test]
    fn a_document_outside_the_filters_or_without_one_hourly_usd_rate_is_refused_by_name() {
        let e = parse_document(&document("p5.48xlarge", "Windows", "60"), 0).unwrap_err();
        assert!(e.contains("QNYZZQZP7Y8CJNMM") && e.contains("operatingSystem"), "{e}");
        let e = parse_document(&document("p5.48xlarge", "Linux", "free"), 0).unwrap_err();
        assert!(e.contains("6YS6EN2CT7") && e.contains("\"free\""), "{e}");
        let no_terms = document("p5.48xlarge", "Linux", "1").replace("\"OnDemand\"", "\"Reserved\"");
        assert!(parse_document(&no_terms, 0).unwrap_err().contains("not exactly one on-demand term"));
        assert!(parse_document("{\"product\": 3}", 0).is_err());
    }
}
