//! Fetched AWS prices (`crate::fetched_prices`) on every engine.

use super::{Engine, SqlLedger};
use crate::fetched_prices::{FetchedPrice, FetchedPriceStore, PriceSource};
use crate::sql::{Db, Tx};
use crate::{LedgerError, sql_params};

impl<E: Engine> FetchedPriceStore for SqlLedger<E> {
    fn put_fetched_prices(&self, prices: &[FetchedPrice]) -> Result<usize, LedgerError> {
        let guard = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let tx = Tx::begin(&guard.conn, self.engine.begin())?;
        for p in prices {
            tx.run(
                "INSERT INTO fetched_prices (source, region, zone, instance_type, effective_ns, micros_per_hour,
                 fetched_ns, provenance) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                 ON CONFLICT (source, region, zone, instance_type, effective_ns) DO UPDATE SET
                 micros_per_hour = excluded.micros_per_hour, fetched_ns = excluded.fetched_ns,
                 provenance = excluded.provenance",
                sql_params![
                    p.source.as_str(),
                    p.region,
                    p.zone,
                    p.instance_type,
                    p.effective_ns as i64,
                    p.micros_per_hour as i64,
                    p.fetched_ns as i64,
                    p.provenance
                ],
            )?;
        }
        tx.commit()?;
        Ok(prices.len())
    }

    fn fetched_prices(&self) -> Result<Vec<FetchedPrice>, LedgerError> {
        self.with_reader(|c| {
            let rows = c.all(
                "SELECT source, region, zone, instance_type, effective_ns, micros_per_hour, fetched_ns, provenance
                 FROM fetched_prices ORDER BY source, region, zone, instance_type, effective_ns",
                sql_params![],
                |r| {
                    Ok((
                        r.get::<String>(0)?,
                        FetchedPrice {
                            source: PriceSource::PriceList,
                            region: r.get(1)?,
                            zone: r.get(2)?,
                            instance_type: r.get(3)?,
                            effective_ns: r.get::<i64>(4)? as u64,
                            micros_per_hour: r.get::<i64>(5)? as u64,
                            fetched_ns: r.get::<i64>(6)? as u64,
                            provenance: r.get(7)?,
                        },
                    ))
                },
            )?;
            rows.into_iter()
                .map(|(source, mut p)| {
                    p.source = PriceSource::parse(&source)
                        .ok_or_else(|| LedgerError::Io(format!("fetched_prices holds an unknown source {source:?}")))?;
                    Ok(p)
                })
                .collect()
        })
    }
}
