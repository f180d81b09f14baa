//! The Multus NetworkAttachmentDefinition, typed just enough to write and watch it.
//! Multus installs its CRD; railyard never generates one (`schema = "disabled"`).

use kube::CustomResource;
use serde::{Deserialize, Serialize};

#[derive(CustomResource, Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "k8s.cni.cncf.io",
    version = "v1",
    kind = "NetworkAttachmentDefinition",
    plural = "network-attachment-definitions",
    namespaced,
    schema = "disabled",
    derive = "PartialEq"
)]
pub struct NetworkAttachmentDefinitionSpec {
    /// The CNI config (a JSON document in a string) Multus hands to the plugin.
    #[serde(default)]
    pub config: String,
}
