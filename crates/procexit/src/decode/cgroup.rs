//! Linux cgroups: which cgroup a process is in (`/proc/PID/cgroup`) and
//! which container, if any, that cgroup path names. Pure text parsing.
//!
//! `/proc/PID/cgroup` has one line per hierarchy, `ID:CONTROLLERS:PATH`
//! (cgroups(7)). The cgroup v2 (unified) hierarchy is the line `0::PATH`.
//! [`cgroup_path`] takes that line on a cgroup v2 system (every current
//! distribution) and on a "hybrid" one where the unified tree is in use. On
//! a cgroup v1 system, or a hybrid one whose unified tree is left empty
//! (every process at `/`, as in some container hosts), it takes the
//! `memory` controller's path (where container runtimes account memory, so
//! the path they create), else the `pids` controller's, else systemd's
//! named hierarchy (`name=systemd`), else the unified `/`.
//!
//! [`container_id`] recognises the paths container runtimes create:
//!
//! | runtime | path (innermost component) | id |
//! |---|---|---|
//! | Docker, cgroupfs driver | `/docker/<64 hex>` | the hex |
//! | Docker, systemd driver | `/system.slice/docker-<64 hex>.scope` | the hex |
//! | containerd / CRI (Kubernetes) | `…/kubepods-…-pod<uid>.slice/cri-containerd-<64 hex>.scope`, `/kubepods/…/pod<uid>/<64 hex>` | the hex |
//! | CRI-O | `…/crio-<64 hex>.scope` | the hex |
//! | Podman | `…/libpod-<64 hex>.scope` (also with a `/container` child) | the hex |
//! | systemd-nspawn, machined | `/machine.slice/machine-<name>.scope` | the name, unescaped |
//! | LXC | `/lxc.payload.<name>`, `/lxc/<name>` | the name |
//!
//! The innermost match wins (Docker in Docker names the inner container).
//! Podman's `libpod-conmon-…` scope is its monitor, not a container.

/// The cgroup path of a process from the text of `/proc/PID/cgroup`: the
/// v2 unified line unless it is `/` beside v1 lines, else the v1 `memory`,
/// `pids` or `name=systemd` line (see the module documentation). `None`
/// when no line fits.
///
/// ```
/// use procexit::cgroup::cgroup_path;
///
/// assert_eq!(cgroup_path("0::/system.slice/cron.service\n").as_deref(), Some("/system.slice/cron.service"));
/// let v1 = "12:pids:/user.slice\n4:memory:/docker/abc\n1:name=systemd:/init.scope\n";
/// assert_eq!(cgroup_path(v1).as_deref(), Some("/docker/abc"));
/// ```
pub fn cgroup_path(text: &str) -> Option<String> {
    let mut unified = None;
    let mut memory = None;
    let mut pids = None;
    let mut systemd = None;
    for line in text.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if path.is_empty() {
            continue;
        }
        if id == "0" && controllers.is_empty() {
            unified = unified.or(Some(path));
            continue;
        }
        for controller in controllers.split(',') {
            match controller {
                "memory" => memory = memory.or(Some(path)),
                "pids" => pids = pids.or(Some(path)),
                "name=systemd" => systemd = systemd.or(Some(path)),
                _ => {}
            }
        }
    }
    let v1 = memory.or(pids).or(systemd);
    match unified {
        Some(path) if path != "/" || v1.is_none() => Some(path.to_string()),
        _ => v1.or(unified).map(str::to_string),
    }
}

/// The container a cgroup path names, when it names one (see the module
/// documentation for the recognised layouts).
///
/// ```
/// use procexit::cgroup::container_id;
///
/// let id = "3f4e2cbd9a1c5d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9012345678abcd";
/// assert_eq!(container_id(&format!("/system.slice/docker-{id}.scope")).as_deref(), Some(id));
/// assert_eq!(container_id("/user.slice/user-1000.slice/session-2.scope"), None);
/// ```
pub fn container_id(path: &str) -> Option<String> {
    // From the leaf up, each component with the one above it.
    let mut components = path.split('/').filter(|c| !c.is_empty()).rev().peekable();
    while let Some(component) = components.next() {
        if let Some(id) = id_of_component(component, components.peek().copied()) {
            return Some(id);
        }
    }
    None
}

/// Scope prefixes (`<prefix><64 hex>.scope`) of the runtimes that use
/// systemd scopes.
const SCOPE_PREFIXES: [&str; 5] = [
    "docker-",
    "cri-containerd-",
    "crio-",
    "libpod-",
    "containerd-",
];

fn id_of_component(component: &str, parent: Option<&str>) -> Option<String> {
    if is_container_hex(component) {
        return Some(component.to_string());
    }
    if let Some(stem) = component.strip_suffix(".scope") {
        for prefix in SCOPE_PREFIXES {
            if let Some(id) = stem.strip_prefix(prefix) {
                if is_container_hex(id) {
                    return Some(id.to_string());
                }
            }
        }
        if parent == Some("machine.slice") {
            let name = stem.strip_prefix("machine-")?;
            return Some(unescape_systemd(name)).filter(|n| !n.is_empty());
        }
        return None;
    }
    if let Some(name) = component.strip_prefix("lxc.payload.") {
        return Some(name.to_string()).filter(|n| !n.is_empty());
    }
    if parent == Some("lxc") {
        return Some(component.to_string());
    }
    None
}

/// A full 64-digit lowercase hex id, as Docker, containerd, CRI-O and
/// Podman create them.
fn is_container_hex(text: &str) -> bool {
    text.len() == 64
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Undoes systemd's unit-name escaping (`\x2d` for `-`, systemd.unit(5)).
fn unescape_systemd(name: &str) -> String {
    let mut out = Vec::with_capacity(name.len());
    let mut rest = name.as_bytes();
    while let Some((&first, tail)) = rest.split_first() {
        match escaped_byte(rest) {
            Some((byte, after)) => {
                out.push(byte);
                rest = after;
            }
            None => {
                out.push(first);
                rest = tail;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `\xHH` at the start of `text`: the byte and what follows.
fn escaped_byte(text: &[u8]) -> Option<(u8, &[u8])> {
    let tail = text.strip_prefix(b"\\x")?;
    let hex = std::str::from_utf8(tail.get(..2)?).ok()?;
    Some((u8::from_str_radix(hex, 16).ok()?, tail.get(2..)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "9c1d2e3f4a5b6c7d8e9f00112233445566778899aabbccddeeff001122334455";
    const ID2: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn unified_line_wins_on_v2_and_hybrid() {
        assert_eq!(
            cgroup_path("0::/user.slice/user-1000.slice/session-2.scope\n").as_deref(),
            Some("/user.slice/user-1000.slice/session-2.scope")
        );
        // Hybrid: v1 controllers plus the unified line (systemd's tree).
        let hybrid = format!(
            "12:memory:/docker/{ID}\n11:pids:/docker/{ID}\n\
             1:name=systemd:/docker/{ID}\n0::/docker/{ID}\n"
        );
        assert_eq!(cgroup_path(&hybrid), Some(format!("/docker/{ID}")));
        // A container with its own cgroup namespace sees its root.
        assert_eq!(cgroup_path("0::/\n").as_deref(), Some("/"));
        // Hybrid with an unused unified tree: the memory controller's path.
        let unused = "9:name=systemd:/\n8:pids:/\n4:memory:/process_api/4e70\n0::/\n";
        assert_eq!(cgroup_path(unused).as_deref(), Some("/process_api/4e70"));
        assert_eq!(
            cgroup_path("9:name=systemd:/\n0::/\n").as_deref(),
            Some("/")
        );
    }

    #[test]
    fn v1_prefers_memory_then_pids_then_systemd() {
        let v1 = "11:cpu,cpuacct:/a\n7:pids:/p\n5:memory:/m\n1:name=systemd:/s\n";
        assert_eq!(cgroup_path(v1).as_deref(), Some("/m"));
        assert_eq!(
            cgroup_path("7:pids:/p\n1:name=systemd:/s\n").as_deref(),
            Some("/p")
        );
        assert_eq!(cgroup_path("1:name=systemd:/s\n").as_deref(), Some("/s"));
        assert_eq!(cgroup_path("3:cpu:/c\n"), None);
        assert_eq!(cgroup_path(""), None);
        assert_eq!(cgroup_path("garbage\n::\n"), None);
    }

    #[test]
    fn container_ids_of_real_looking_paths() {
        let cases = [
            (format!("/docker/{ID}"), Some(ID)),
            (format!("/system.slice/docker-{ID}.scope"), Some(ID)),
            (
                format!(
                    "/kubepods.slice/kubepods-burstable.slice/\
                     kubepods-burstable-pod1f0e2d3c_4b5a_6978_8a9b_0c1d2e3f4a5b.slice/\
                     cri-containerd-{ID}.scope"
                ),
                Some(ID),
            ),
            (
                format!("/kubepods/besteffort/pod1f0e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b/{ID}"),
                Some(ID),
            ),
            (
                format!("/kubepods.slice/kubepods-pod0a.slice/crio-{ID}.scope"),
                Some(ID),
            ),
            (format!("/machine.slice/libpod-{ID}.scope"), Some(ID)),
            (
                format!(
                    "/user.slice/user-1000.slice/user@1000.service/user.slice/\
                     libpod-{ID}.scope/container"
                ),
                Some(ID),
            ),
            // Docker in Docker: the inner container.
            (format!("/docker/{ID2}/docker/{ID}"), Some(ID)),
            (format!("/system.slice/containerd-{ID}.scope"), Some(ID)),
        ];
        for (path, expected) in cases {
            assert_eq!(container_id(&path).as_deref(), expected, "{path}");
        }
    }

    #[test]
    fn machines_and_lxc_are_named() {
        assert_eq!(
            container_id("/machine.slice/machine-debian\\x2dtest.scope").as_deref(),
            Some("debian-test")
        );
        assert_eq!(
            container_id("/machine.slice/machine-web.scope/payload/system.slice").as_deref(),
            Some("web")
        );
        assert_eq!(container_id("/lxc.payload.c1").as_deref(), Some("c1"));
        assert_eq!(container_id("/lxc/c2").as_deref(), Some("c2"));
    }

    #[test]
    fn ordinary_cgroups_name_no_container() {
        for path in [
            "/",
            "/init.scope",
            "/system.slice/cron.service",
            "/user.slice/user-1000.slice/session-2.scope",
            "/user.slice/user-1000.slice/user@1000.service/app.slice/run-r1a2b.scope",
            // Podman's container monitor is not the container.
            &format!("/machine.slice/libpod-conmon-{ID}.scope"),
            // Short or uppercase ids are not runtime ids.
            "/docker/abc123",
            &format!("/docker/{}", ID.to_uppercase()),
            // machine- scopes outside machine.slice are not machines.
            "/system.slice/machine-x.scope",
            "",
        ] {
            assert_eq!(container_id(path), None, "{path}");
        }
    }

    #[test]
    fn unescaping_never_panics() {
        for name in ["\\", "\\x", "\\x2", "\\xzz", "a\\x2db", "\\x41\\x42"] {
            let _ = unescape_systemd(name);
        }
        assert_eq!(unescape_systemd("a\\x2db"), "a-b");
        assert_eq!(unescape_systemd("\\x4"), "\\x4");
    }
}
