//! The customer's way into a container: their SSH public keys in `/root/.ssh/authorized_keys`
//! and their root password *hash* in `/etc/shadow` (the password itself never reaches a host).
//! Written on the host side only into a fresh root filesystem, before its first boot; on a
//! running container a reset goes through a shell inside ([`RESET_SCRIPT`]).

use super::ContainerError;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use vessel_core::Access;

fn io(what: String) -> impl FnOnce(std::io::Error) -> ContainerError {
    move |source| ContainerError::Io { what, source }
}

/// A file written through a temporary name, never following a symlink at the final name.
fn write_file(path: &Path, data: &[u8], mode: u32, owner: Option<u32>) -> Result<(), ContainerError> {
    let tmp = path.with_extension("vessel-tmp");
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)
        .map_err(io(format!("create {}", tmp.display())))?;
    f.write_all(data).map_err(io(format!("write {}", tmp.display())))?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(mode)).map_err(io(format!("chmod {}", tmp.display())))?;
    if let Some(uid) = owner {
        std::os::unix::fs::lchown(&tmp, Some(uid), Some(uid)).map_err(io(format!("chown {}", tmp.display())))?;
    }
    fs::rename(&tmp, path).map_err(io(format!("rename {}", path.display())))
}

/// Root's line of a shadow file with `hash` (the other lines kept; root's added if missing).
pub fn shadow_with(current: &str, hash: &str) -> String {
    let mut out = String::new();
    let mut found = false;
    for line in current.lines() {
        match line.split_once(':') {
            Some(("root", rest)) => {
                found = true;
                let after = rest.split_once(':').map(|(_, a)| a).unwrap_or("19000:0:99999:7:::");
                out += &format!("root:{hash}:{after}\n");
            }
            _ => out += &format!("{line}\n"),
        }
    }
    if !found {
        out = format!("root:{hash}:19000:0:99999:7:::\n{out}");
    }
    out
}

/// Keys and password hash into the fresh root filesystem at `root` (owned by the container's
/// root: host uid `root_uid` with a user namespace, 0 without). Nothing given: nothing written.
pub fn write_before_boot(root: &Path, access: &Access, root_uid: Option<u32>) -> Result<(), ContainerError> {
    if !access.ssh_keys.is_empty() {
        let ssh = root.join("root/.ssh");
        fs::create_dir_all(&ssh).map_err(io(format!("mkdir {}", ssh.display())))?;
        fs::set_permissions(&ssh, fs::Permissions::from_mode(0o700)).map_err(io(format!("chmod {}", ssh.display())))?;
        if let Some(uid) = root_uid {
            std::os::unix::fs::lchown(&ssh, Some(uid), Some(uid)).map_err(io(format!("chown {}", ssh.display())))?;
        }
        let keys: String = access.ssh_keys.iter().map(|k| format!("{}\n", k.to_line())).collect();
        write_file(&ssh.join("authorized_keys"), keys.as_bytes(), 0o600, root_uid)?;
    }
    if let Some(hash) = &access.root_password_hash {
        let etc = root.join("etc");
        let shadow = etc.join("shadow");
        let current = fs::read_to_string(&shadow).unwrap_or_default();
        // Debian's shadow is root:shadow 0640; keep the mode and group if it exists.
        let (mode, gid) = fs::symlink_metadata(&shadow)
            .map(|m| (std::os::unix::fs::MetadataExt::mode(&m) & 0o777, Some(std::os::unix::fs::MetadataExt::gid(&m))))
            .unwrap_or((0o600, None));
        write_file(&shadow, shadow_with(&current, hash.as_str()).as_bytes(), mode, root_uid)?;
        if let Some(gid) = gid {
            std::os::unix::fs::lchown(&shadow, None, Some(gid)).map_err(io(format!("chgrp {}", shadow.display())))?;
        }
    }
    Ok(())
}

/// The host's resolver configuration for a container: its `nameserver`, `search` and
/// `options` lines, without loopback nameservers (127.0.0.53 and the like answer only on the
/// host itself). `None` when no usable nameserver is left.
pub fn resolv_conf_for_container(host: &str) -> Option<String> {
    let mut out = String::new();
    let mut servers = 0;
    for line in host.lines().map(str::trim) {
        let mut f = line.split_whitespace();
        match f.next() {
            Some("nameserver") => {
                let Some(addr) = f.next().and_then(|a| a.parse::<std::net::IpAddr>().ok()) else { continue };
                if addr.is_loopback() || addr.is_unspecified() {
                    continue;
                }
                servers += 1;
                out += &format!("nameserver {addr}\n");
            }
            Some("search") | Some("options") => out += &format!("{line}\n"),
            _ => {}
        }
    }
    (servers > 0).then_some(out)
}

/// Writes `/etc/resolv.conf` of the fresh root filesystem: the pool's resolvers (`dns`, the
/// panel's), or else the host's (see [`resolv_conf_for_container`]); leaves the template's
/// when neither names one.
pub fn write_resolv_conf(root: &Path, dns: &[std::net::IpAddr], host_resolv: &Path, root_uid: Option<u32>) -> Result<(), ContainerError> {
    let text = match dns {
        [] => fs::read_to_string(host_resolv).ok().and_then(|h| resolv_conf_for_container(&h)),
        servers => Some(servers.iter().map(|s| format!("nameserver {s}\n")).collect()),
    };
    let Some(text) = text else {
        return Ok(());
    };
    let etc = root.join("etc");
    fs::create_dir_all(&etc).map_err(io(format!("mkdir {}", etc.display())))?;
    write_file(&etc.join("resolv.conf"), text.as_bytes(), 0o644, root_uid)
}

/// Run inside a running container with the new hash on stdin: root's shadow line replaced
/// (or added) by `sed`, which both busybox and Debian have. The hash's alphabet (crypt's:
/// letters, digits, `./$=,`) needs no escaping in the `|`-delimited expression.
pub const RESET_SCRIPT: &str = r#"IFS= read -r h || exit 1
case "$h" in *[!A-Za-z0-9./\$=,]*|'') echo "bad hash" >&2; exit 1;; esac
if grep -q '^root:' /etc/shadow 2>/dev/null; then
  sed -i "s|^root:[^:]*:|root:$h:|" /etc/shadow
else
  umask 077; echo "root:$h:19000:0:99999:7:::" >> /etc/shadow
fi"#;

#[cfg(test)]
mod tests {
    #[test]
    fn resolv_conf_drops_loopback_servers() {
        let host = "# generated\nnameserver 127.0.0.53\nnameserver 10.0.0.2\nnameserver ::1\nsearch example.com\noptions edns0\n";
        assert_eq!(super::resolv_conf_for_container(host).unwrap(), "nameserver 10.0.0.2\nsearch example.com\noptions edns0\n");
        assert_eq!(super::resolv_conf_for_container("nameserver 127.0.0.53\n"), None);
    }

    #[test]
    fn root_line_replaced_or_added() {
        let s = super::shadow_with("root:*:19000:0:99999:7:::\nnobody:*:1::::::\n", "$6$a$b");
        assert_eq!(s, "root:$6$a$b:19000:0:99999:7:::\nnobody:*:1::::::\n");
        assert_eq!(super::shadow_with("", "$6$a$b"), "root:$6$a$b:19000:0:99999:7:::\n");
    }
}
