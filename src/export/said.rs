//! What an export says of itself, a line at a time: a dry run's plan (`--dry-run`), and how
//! each layer of a patch delta travels (`--patch`). The command prints them.

use super::{Measured, Output, PatchOutcome};
use crate::progress::human_bytes;

impl PatchOutcome {
    /// `--patch`: how the layer travels, if it travels as a patch or was refused one.
    pub fn line(&self) -> Option<String> {
        match (self.patch_size, &self.whole_because) {
            (Some(patch), _) => Some(format!(
                "  {}: layer {} travels as a patch of {} instead of {} ({:.1}%)",
                self.image,
                self.layer.short(),
                human_bytes(patch),
                human_bytes(self.blob_size),
                patch as f64 * 100.0 / self.blob_size.max(1) as f64
            )),
            (None, Some(why)) => Some(format!(
                "  {}: layer {} travels whole ({}): {why}",
                self.image,
                self.layer.short(),
                human_bytes(self.blob_size)
            )),
            (None, None) => None,
        }
    }
}

impl Measured {
    /// `--dry-run`: what would be written to `output`, per image, and in how many parts.
    pub fn lines(&self, output: &Output, patch: bool) -> Vec<String> {
        let about = if self.estimated { "about " } else { "" };
        let name = match output {
            Output::Parts(split) => split.path.display().to_string(),
            other => other.describe(),
        };
        let mut lines = vec![format!(
            "would write {name}: {about}{} ({} bytes)",
            human_bytes(self.size),
            self.size
        )];
        for image in &self.images {
            let mut line = format!("  {}: {} new", image.name, human_bytes(image.bytes));
            if image.shared_bytes > 0 {
                line += &format!(
                    ", {} shared with {} (counted there)",
                    human_bytes(image.shared_bytes),
                    image.shared_with.join(", ")
                );
            }
            if image.left_out > 0 {
                line += &format!(
                    ", {} left out ({})",
                    crate::units::count(image.left_out, "layer"),
                    human_bytes(image.left_out_bytes)
                );
            }
            lines.push(line);
        }
        if !self.since.is_empty() {
            lines.push(format!(
                "  a delta: what it leaves out is held where {} is loaded",
                self.since.join(", ")
            ));
        }
        if let Output::Parts(split) = output {
            let parts = self.size.div_ceil(split.part_size).max(1);
            let media = parts + split.parity as u64;
            let recovery = if split.parity > 0 {
                format!(
                    ", and {} of {}",
                    crate::units::count(split.parity, "recovery part"),
                    human_bytes(split.part_size.min(self.size))
                )
            } else {
                String::new()
            };
            lines.push(format!(
                "in {} of at most {}{recovery}: {media} medi{} of {}",
                crate::units::count(parts as usize, "part"),
                human_bytes(split.part_size),
                if media == 1 { "um" } else { "a" },
                human_bytes(split.part_size)
            ));
        }
        if patch {
            lines.push(
                "with --patch, layers are counted whole: a patch's size is known once it is made"
                    .to_string(),
            );
        }
        lines.push("nothing was written (--dry-run)".to_string());
        lines
    }
}
