//! Container and Kubernetes pod identity, node-local (no API server): the
//! container id and pod UID from a process's cgroup path, in the layouts
//! the kubelet and the runtimes make (systemd and cgroupfs drivers;
//! containerd, CRI-O and docker naming; cgroup v1 and v2 paths alike), and
//! the pod's name and namespace from the kubelet's pod log directories
//! (`/var/log/pods/NAMESPACE_NAME_UID`).

use std::path::Path;

/// What a process's cgroup path says about it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identity {
    /// 64 hex digits.
    pub container_id: Option<String>,
    /// The pod's UID (dashed form).
    pub pod_uid: Option<String>,
    pub pod: Option<String>,
    pub namespace: Option<String>,
}

/// Pod log directories read at most.
const MAX_POD_DIRS: usize = 10_000;

fn is_container_id(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

fn is_uid(text: &str) -> bool {
    text.len() == 36
        && text.bytes().enumerate().all(|(i, b)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                b == b'-'
            } else {
                b.is_ascii_hexdigit()
            }
        })
}

/// The container id a cgroup path component names, if it names one.
fn container_of(component: &str) -> Option<String> {
    let bare = component.strip_suffix(".scope").unwrap_or(component);
    let id = ["cri-containerd-", "crio-", "docker-", "libpod-"]
        .iter()
        .find_map(|prefix| bare.strip_prefix(prefix))
        .unwrap_or(bare);
    is_container_id(id).then(|| id.to_string())
}

/// The pod UID a component names: `pod<UID>` (cgroupfs) or
/// `kubepods[-QOS]-pod<UID with underscores>.slice` (systemd).
fn pod_uid_of(component: &str) -> Option<String> {
    let uid = if let Some(slice) = component.strip_suffix(".slice") {
        slice.rsplit_once("-pod")?.1.replace('_', "-")
    } else {
        component.strip_prefix("pod")?.to_string()
    };
    is_uid(&uid).then_some(uid)
}

/// Container id and pod UID from a cgroup path.
pub fn from_cgroup_path(path: &str) -> Identity {
    let mut identity = Identity::default();
    for component in path.split('/') {
        if let Some(uid) = pod_uid_of(component) {
            identity.pod_uid = Some(uid);
        }
        if let Some(id) = container_of(component) {
            identity.container_id = Some(id);
        }
    }
    identity
}

/// Fills in the pod's name and namespace from the kubelet's pod log
/// directories under `pods_dir`.
pub fn add_pod_names(identity: &mut Identity, pods_dir: &Path) {
    let Some(uid) = &identity.pod_uid else { return };
    let Ok(entries) = std::fs::read_dir(pods_dir) else {
        return;
    };
    let suffix = format!("_{uid}");
    for entry in entries.flatten().take(MAX_POD_DIRS) {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(rest) = name.strip_suffix(&suffix) else {
            continue;
        };
        // Names are DNS labels and subdomains: no underscore inside.
        if let Some((namespace, pod)) = rest.split_once('_') {
            identity.namespace = Some(crate::format::escape_control(namespace));
            identity.pod = Some(crate::format::escape_control(pod));
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const UID: &str = "1a2b3c4d-0000-4111-8222-123456789abc";

    #[test]
    fn every_layout_gives_the_container_and_the_pod() {
        let uid_ = UID.replace('-', "_");
        for path in [
            format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid_}.slice/cri-containerd-{ID}.scope"
            ),
            format!("/kubepods.slice/kubepods-pod{uid_}.slice/crio-{ID}.scope"),
            format!(
                "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{uid_}.slice/docker-{ID}.scope"
            ),
            format!("/kubepods/burstable/pod{UID}/{ID}"),
            format!("/kubepods/pod{UID}/{ID}"),
        ] {
            let id = from_cgroup_path(&path);
            assert_eq!(id.container_id.as_deref(), Some(ID), "{path}");
            assert_eq!(id.pod_uid.as_deref(), Some(UID), "{path}");
        }
        let docker = from_cgroup_path(&format!("/docker/{ID}"));
        assert_eq!(docker.container_id.as_deref(), Some(ID));
        assert_eq!(docker.pod_uid, None);
        assert_eq!(
            from_cgroup_path("/user.slice/user-0.slice/session-1.scope"),
            Identity::default()
        );
        assert_eq!(
            from_cgroup_path("/kubepods/podnot-a-uid/xyz"),
            Identity::default()
        );
    }
}
