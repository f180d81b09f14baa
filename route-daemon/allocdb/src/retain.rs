//! Fixed addresses for StatefulSet pods: a DEL keeps them for the pod's name.
//!
//! A StatefulSet pod recreated under the same name should find its addresses
//! again (Spiderpool does this). The daemon marks such pods at ADD
//! (`PodRef.controller = "StatefulSet"`, from the API). Their DEL does not free
//! the addresses: the attachment is replaced, in the same locked step, by a
//! *retained* attachment keyed by the pod's name ([`retained_id`]), which holds
//! the same addresses in the same bitmaps, so no other pod can take them. The
//! next ADD of a StatefulSet pod of that name on this host takes them over.
//!
//! A retained attachment has no UID, so the leak sweep matches it by
//! namespace and name: it is released once no pod of that name has been bound
//! to this host for the sweep's grace (the StatefulSet was scaled down, or its
//! pod was recreated on another host, where it gets that host's addresses:
//! addresses stay with their host's blocks, see docs/design/static-addresses.md).
//! CNI GC never releases one: the runtime does not know of it.

pub use railyard_core::ipam::RETAINED_PREFIX;
use railyard_core::ipam::{AttachmentId, PodRef};

use crate::model::Attachment;

/// The controller kind whose pods keep their addresses.
pub const STATEFUL_SET: &str = "StatefulSet";

/// The retained attachment of pod `namespace/name` on one interface.
pub fn retained_id(network: &str, namespace: &str, name: &str, ifname: &str) -> AttachmentId {
    AttachmentId {
        network: network.to_string(),
        container_id: format!("{RETAINED_PREFIX}{namespace}:{name}"),
        ifname: ifname.to_string(),
    }
}

pub fn is_retained(id: &AttachmentId) -> bool {
    id.is_retained()
}

/// Whether a released attachment's addresses are kept for its pod's name.
pub(crate) fn keeps(att: &Attachment) -> bool {
    !is_retained(&att.id)
        && att.pod.controller.as_deref() == Some(STATEFUL_SET)
        && !att.pod.namespace.is_empty()
        && !att.pod.name.is_empty()
}

/// The retained attachment standing in for `att` after its DEL.
pub(crate) fn placeholder(att: &Attachment) -> Attachment {
    Attachment {
        id: retained_id(
            &att.id.network,
            &att.pod.namespace,
            &att.pod.name,
            &att.id.ifname,
        ),
        pod: PodRef {
            namespace: att.pod.namespace.clone(),
            name: att.pod.name.clone(),
            // No UID: the sweep matches it by name, so it lives while a pod
            // of that name is bound to this host.
            uid: String::new(),
            controller: att.pod.controller.clone(),
        },
        nics: att.nics.clone(),
    }
}

/// The retained attachment an ADD of `pod` on `id`'s interface takes over.
pub(crate) fn for_add(id: &AttachmentId, pod: &PodRef) -> Option<AttachmentId> {
    (pod.controller.as_deref() == Some(STATEFUL_SET)
        && !pod.namespace.is_empty()
        && !pod.name.is_empty()
        && !is_retained(id))
    .then(|| retained_id(&id.network, &pod.namespace, &pod.name, &id.ifname))
}
