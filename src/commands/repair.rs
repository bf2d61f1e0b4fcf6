//! `haul repair SET`: a parts set's missing and damaged parts rebuilt in place (see
//! `crate::parts::repair`), and what was rebuilt said.

use anyhow::Context;

use crate::cli::RepairArgs;
use crate::parts::read::PartsSet;

pub async fn run(args: &RepairArgs) -> anyhow::Result<()> {
    let Some(record) = crate::parts::set_of(&args.set) else {
        anyhow::bail!(
            "{} is not a parts set: name its record (FILE.parts), or its first part (FILE.001) \
             with the record beside it",
            args.set.display()
        );
    };
    let set = PartsSet::open(&record)?;
    let name = set.describe();
    let checked = set.clone();
    let rebuilt = crate::blocking::run(move || crate::parts::repair::repair(&checked))
        .await
        .with_context(|| format!("{name} was not repaired"))?;
    if rebuilt.is_empty() {
        eprintln!(
            "{name}: all {} parts are whole; nothing to do",
            set.record.all_parts().count()
        );
    } else {
        for problem in &rebuilt {
            eprintln!("{problem}: rebuilt");
        }
        eprintln!(
            "{name}: {} part{} rebuilt; `sha256sum -c` of its .sha256 file passes again",
            rebuilt.len(),
            if rebuilt.len() == 1 { "" } else { "s" }
        );
    }
    Ok(())
}
