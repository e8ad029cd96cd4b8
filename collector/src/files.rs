//! What the collector reads from files at start: the prices file and the Backstage catalog folder. The
//! rules that parse them are pure (`gpucost_rules::book`, `gpucost_rules::catalog`); reading is done here.

use std::path::Path;

use gpucost_rules::book::PriceBook;
use gpucost_rules::catalog::Catalog;

/// The shipped catalogue plus the prices file at `path`, if any; errors name the file, the entry and the key.
pub fn price_book(path: Option<&Path>) -> Result<PriceBook, String> {
    match path {
        None => PriceBook::with_file_text(None),
        Some(p) => {
            let text =
                std::fs::read_to_string(p).map_err(|e| format!("cannot read prices file {}: {e}", p.display()))?;
            PriceBook::with_file_text(Some(&text)).map_err(|e| format!("prices file {}: {e}", p.display()))
        }
    }
}

/// Every `*.yaml` / `*.yml` file of `dir`, in name order, as one catalog.
pub fn catalog_dir(dir: &Path) -> Result<Catalog, String> {
    let mut catalog = Catalog::default();
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read catalog folder {}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    for f in files {
        let text = std::fs::read_to_string(&f).map_err(|e| format!("cannot read {}: {e}", f.display()))?;
        catalog.add_yaml(&f.display().to_string(), &text)?;
    }
    Ok(catalog)
}
