//! `haul repair NAME.parts`: every part checked; the missing, damaged and foreign ones rebuilt
//! from the others (see [`super::parity`]) under temporary names, each checked against the
//! record, and only then renamed into place. When more parts are lost than the recovery parts
//! cover, nothing is changed.

use std::fs::File;

use super::parity::{self, Shard};
use super::read::{OpenError, PartProblem, PartsSet};
use super::{PartHasher, PartRecord};
use crate::fsx::TempFile;

#[derive(Debug, thiserror::Error)]
pub enum RepairError {
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error("cannot {what} {file}")]
    Io {
        what: &'static str,
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{}; the set has no recovery parts (it was exported without --parity), so nothing \
         can be rebuilt: copy {} again from the source; nothing was changed",
        list(.problems),
        if .problems.len() == 1 { "it" } else { "them" }
    )]
    NoRecovery { problems: Vec<PartProblem> },
    #[error(
        "{}: {} parts are missing or damaged, and the set's {parity} recovery part{} can rebuild \
         at most {parity}; copy at least {} of them again from the source; nothing was changed",
        list(.problems),
        .problems.len(),
        if *.parity == 1 { "" } else { "s" },
        .problems.len() - .parity
    )]
    TooMany {
        problems: Vec<PartProblem>,
        parity: usize,
    },
    #[error(
        "{file} was rebuilt, but not as the set recorded it (its SHA-256 is {actual}, the set \
         expects {expected}); the record or the other parts are wrong; nothing was changed"
    )]
    Rebuilt {
        file: String,
        expected: String,
        actual: String,
    },
}

fn list(problems: &[PartProblem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Repairs `set` in place; returns what was wrong and is now rebuilt (nothing when it was
/// whole).
pub fn repair(set: &PartsSet) -> Result<Vec<PartProblem>, RepairError> {
    let io = |what: &'static str, file: &str| {
        let file = file.to_string();
        move |source| RepairError::Io { what, file, source }
    };
    let problems = set
        .check_all()
        .map_err(io("read the parts of", &set.describe()))?;
    if problems.is_empty() {
        return Ok(problems);
    }
    let parity = set.record.parity();
    if parity == 0 {
        return Err(RepairError::NoRecovery { problems });
    }
    if problems.len() > parity {
        return Err(RepairError::TooMany { problems, parity });
    }
    let recovery = set.record.recovery.as_ref().expect("parity > 0");
    let lost = |part: &PartRecord| problems.iter().any(|p| p.file == part.file);

    // The whole parts, open for reading; a temporary file for each lost one.
    let mut whole: Vec<Option<File>> = Vec::new();
    let mut rebuilding: Vec<TempFile> = Vec::new();
    for part in set.record.all_parts() {
        let path = set.part_path(&part.file);
        if lost(part) {
            let temp = TempFile::create(&path).map_err(io("create a part beside", &part.file))?;
            rebuilding.push(temp);
            whole.push(None);
        } else {
            whole.push(Some(File::open(&path).map_err(io("open", &part.file))?));
        }
    }
    let mut writers: Vec<(File, PartHasher)> = rebuilding
        .iter()
        .map(|temp| Ok((temp.file.try_clone()?, PartHasher::default())))
        .collect::<std::io::Result<_>>()
        .map_err(io("open", &set.describe()))?;
    {
        let mut writers = writers.iter_mut();
        let mut shards: Vec<Shard<'_>> = whole
            .iter()
            .map(|file| match file {
                Some(file) => Shard::Whole(file),
                None => Shard::Rebuild(writers.next().expect("one writer per lost part")),
            })
            .collect();
        let recovery_shards = shards.split_off(set.record.parts.len());
        let mut data: Vec<(Shard<'_>, u64)> = shards
            .into_iter()
            .zip(set.record.parts.iter().map(|p| p.size))
            .collect();
        let mut recovery_shards = recovery_shards;
        let recovery_size = recovery.parts[0].size;
        parity::rebuild(
            &mut data,
            &mut recovery_shards,
            set.record.part_size,
            recovery_size,
            recovery.stripe,
        )
        .map_err(io("rebuild the parts of", &set.describe()))?;
    }
    // Each rebuilt part must be the one recorded before any takes its name.
    let lost_parts: Vec<&PartRecord> = set.record.all_parts().filter(|p| lost(p)).collect();
    for ((file, hasher), part) in writers.into_iter().zip(&lost_parts) {
        file.sync_all().map_err(io("write", &part.file))?;
        let made = hasher.finish(part.file.clone());
        if made.sha256 != part.sha256 || made.size != part.size {
            return Err(RepairError::Rebuilt {
                file: part.file.clone(),
                expected: part.sha256.clone(),
                actual: made.sha256,
            });
        }
    }
    for (temp, part) in rebuilding.into_iter().zip(&lost_parts) {
        temp.persist()
            .map_err(io("rename the rebuilt", &part.file))?;
    }
    Ok(problems)
}
