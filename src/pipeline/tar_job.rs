//! What a tar will hold, before it is written: the artifacts it may carry, what a delta
//! leaves out, and the blobs to fetch ([`Session::tar_job`]); and, for `--dry-run`, its exact
//! size without downloading or writing a byte ([`Session::measure`]).

use std::collections::HashMap;

use super::*;
use crate::export::Measured;

/// What a tar carries beside its images: what refers to them (`--referrers`), and the trusted
/// root to check their keyless signatures with (`--trusted-root`).
#[derive(Clone, Copy, Default)]
pub struct Carried<'a> {
    pub attachments: &'a [Attachment],
    pub trusted_root: Option<&'a [u8]>,
}

impl Session {
    /// The tar `plan` makes in `layout` for `destination`, and the blobs it needs fetched.
    pub(super) fn tar_job(
        &self,
        plan: &Plan,
        carried: &Carried<'_>,
        layout: Layout,
        destination: &Destination,
    ) -> Result<(TarJob, Vec<BlobRequest>), PipelineError> {
        let attachments = carried.attachments;
        // An artifact travels only as it is, in the OCI layout: a docker loader would take
        // its files for filesystem layers.
        for (image, config) in plan.resolved.iter().zip(&plan.configs) {
            let Some(artifact_type) = &config.artifact_type else {
                continue;
            };
            let why = match layout {
                Layout::Docker | Layout::DockerV1 => {
                    "the docker formats hold images for docker load"
                }
                Layout::Oci if plan.images.iter().any(|i| i.uncompressed) => {
                    "--decompress applies to image layers"
                }
                Layout::Oci => continue,
            };
            return Err(PipelineError::ArtifactNeedsOci {
                reference: image.reference.to_string(),
                artifact_type: artifact_type.clone(),
                why,
            });
        }
        let candidates: Vec<delta::Candidate> = plan
            .images
            .iter()
            .map(|image| delta::Candidate {
                diff_ids: &image.diff_ids,
                blobs: (0..image.layers.len())
                    .map(|i| image.tar_blob(i).clone())
                    .collect(),
                sizes: (0..image.layers.len())
                    .map(|i| {
                        if image.uncompressed {
                            self.store.size_of(image.tar_blob(i))
                        } else {
                            Some(image.layers[i].size)
                        }
                    })
                    .collect(),
            })
            .collect();
        let left_out = delta::left_out(&candidates, destination);
        let mut needed: Vec<BlobRequest> = plan
            .blobs
            .iter()
            .filter(|request| !left_out.blobs.contains_key(request.tar_blob()))
            .cloned()
            .collect();
        // The attachments' blobs (in the cache already: found and fetched with them).
        if let Some(first) = plan.resolved.first() {
            for descriptor in attachments.iter().flat_map(|a| &a.blobs) {
                if !needed
                    .iter()
                    .any(|r| r.descriptor.digest == descriptor.digest)
                {
                    needed.push(BlobRequest::new(
                        first.reference.clone(),
                        descriptor.clone(),
                    ));
                }
            }
        }
        let job = TarJob {
            images: plan.images.clone(),
            layout,
            left_out,
            attachments: attachments.to_vec(),
            subjects: crate::referrers::chosen_from_signed_indexes(plan, attachments),
            trusted_root: carried.trusted_root.map(<[u8]>::to_vec),
            patched: Default::default(),
        };
        Ok((job, needed))
    }

    /// What the export of `plan` would write (`--dry-run`): the tar's exact size, and per
    /// image what is new and what a delta leaves out. Nothing is downloaded or written; a
    /// layer to be decompressed whose uncompressed form is not cached counts at its
    /// compressed size (`Measured::estimated`).
    pub fn measure(
        &self,
        plan: &Plan,
        carried: &Carried<'_>,
        layout: Layout,
        destination: &Destination,
    ) -> Result<Measured, PipelineError> {
        let (job, _) = self.tar_job(plan, carried, layout, destination)?;
        let mut sizes: HashMap<Digest, u64> = HashMap::new();
        let mut estimated = false;
        for request in &plan.blobs {
            let size = match self.store.size_of(request.tar_blob()) {
                Some(size) => size,
                None if request.tar_blob() != &request.descriptor.digest => {
                    estimated = true;
                    request.descriptor.size
                }
                None => request.descriptor.size,
            };
            sizes.insert(request.tar_blob().clone(), size);
        }
        for descriptor in carried.attachments.iter().flat_map(|a| &a.blobs) {
            sizes.insert(descriptor.digest.clone(), descriptor.size);
        }
        let mut measured =
            export::measure(&job, sizes).map_err(|source| PipelineError::Export {
                output: "the plan".to_string(),
                outcome: "nothing was written",
                source,
            })?;
        measured.estimated = estimated;
        Ok(measured)
    }
}
