//! First-boot configuration the ecosystem's way: a NoCloud seed, a small filesystem labelled
//! `cidata` (attached as the machine's second disk) holding `meta-data`, `user-data` and
//! `network-config`, which cloud-init in the OS image reads on its first boot. It carries
//! the hostname, the customer's SSH keys and root password hash (`InstanceSpec.access`), and
//! the static address the panel assigned (`InstanceSpec.network`, network-config v2 matched
//! by the MAC the host gives the machine's card).
//!
//! The files are JSON, which YAML parsers (cloud-init's included) read as YAML; `user-data`
//! starts with the `#cloud-config` line cloud-init needs.

use crate::hostnet::MacAddr;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;
use thiserror::Error;
use vessel_core::InstanceSpec;

#[derive(Debug, Error)]
pub enum SeedError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("mke2fs failed on {path}: {stderr}")]
    Mkfs { path: PathBuf, stderr: String },
}

/// The three files of a NoCloud seed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seed {
    pub meta_data: String,
    pub user_data: String,
    pub network_config: String,
}

/// Public resolvers the guest is told about (the host runs no resolver for it).
const NAMESERVERS: [&str; 2] = ["1.1.1.1", "9.9.9.9"];

impl Seed {
    pub fn for_instance(spec: &InstanceSpec, mac: MacAddr) -> Self {
        let host = spec.hostname.to_string();
        let meta = json!({ "instance-id": spec.id.to_string(), "local-hostname": host });
        let keys: Vec<String> = spec.access.ssh_keys.iter().map(|k| k.to_line()).collect();
        let mut root = json!({ "name": "root", "ssh_authorized_keys": keys, "lock_passwd": spec.access.root_password_hash.is_none() });
        if let Some(h) = &spec.access.root_password_hash {
            root["hashed_passwd"] = json!(h.as_str());
        }
        let user = json!({
            "hostname": host.split('.').next().unwrap_or(&host),
            "fqdn": host,
            "preserve_hostname": false,
            "disable_root": false,
            "ssh_pwauth": spec.access.root_password_hash.is_some(),
            "users": [root],
            // The disk is grown to the plan's size on the host; the guest grows its partition
            // and filesystem into it.
            "growpart": { "mode": "auto", "devices": ["/"] },
            "resize_rootfs": true,
        });
        let mut eth = json!({
            "match": { "macaddress": mac.to_string() },
            "set-name": "eth0",
            "addresses": [],
            "routes": [],
            "nameservers": { "addresses": NAMESERVERS },
        });
        if let Some(a) = &spec.network.ipv4 {
            eth["addresses"].as_array_mut().expect("an array").push(json!(format!("{}/{}", a.address, a.prefix_len)));
            eth["routes"].as_array_mut().expect("an array").push(json!({ "to": "0.0.0.0/0", "via": a.gateway.to_string() }));
        }
        if let Some(a) = &spec.network.ipv6 {
            eth["addresses"].as_array_mut().expect("an array").push(json!(format!("{}/{}", a.address, a.prefix_len)));
            eth["routes"].as_array_mut().expect("an array").push(json!({ "to": "::/0", "via": a.gateway.to_string() }));
        }
        let net = json!({ "version": 2, "ethernets": { "eth0": eth } });
        Seed {
            meta_data: serde_json::to_string_pretty(&meta).expect("JSON"),
            user_data: format!("#cloud-config\n{}\n", serde_json::to_string_pretty(&user).expect("JSON")),
            network_config: serde_json::to_string_pretty(&net).expect("JSON"),
        }
    }

    /// Writes the seed as a small ext4 filesystem labelled `cidata` at `image` (made from a
    /// directory by `mke2fs -d`: no mount needed).
    pub fn write_image(&self, image: &Path) -> Result<(), SeedError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| SeedError::Io { path, source }
        };
        let dir = image.with_extension("d");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        for (name, text) in [("meta-data", &self.meta_data), ("user-data", &self.user_data), ("network-config", &self.network_config)] {
            let p = dir.join(name);
            std::fs::write(&p, text).map_err(io(&p))?;
        }
        let _ = std::fs::remove_file(image);
        let out = Command::new("mke2fs")
            .args(["-q", "-F", "-t", "ext4", "-L", "cidata", "-d"])
            .arg(&dir)
            .arg(image)
            .arg("4M")
            .output()
            .map_err(io(image))?;
        let _ = std::fs::remove_dir_all(&dir);
        if !out.status.success() {
            return Err(SeedError::Mkfs { path: image.into(), stderr: String::from_utf8_lossy(&out.stderr).into() });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vessel_core::access::{Access, PasswordHash, SshPublicKey};
    use vessel_core::lifecycle::{Ipv4Assignment, NetworkSpec};

    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl alice@laptop";

    fn spec() -> InstanceSpec {
        let mut s = crate::store::tests::spec(vessel_core::InstanceKind::Kvm);
        s.access = Access::new(
            vec![SshPublicKey::parse(KEY).unwrap()],
            Some(
                PasswordHash::parse("$6$saltsalt$3kZ1Xb0jYtqnB3yqQ1o8yFQ8yCw5xqGkz8zO0xkq6bqE2q0V2H1k3bLq2S0Qv8m9j1yQq1y0q9Zq3z1x0y1z2.")
                    .unwrap(),
            ),
        )
        .unwrap();
        s.network = NetworkSpec {
            ipv4: Some(Ipv4Assignment {
                address: "203.0.113.7".parse().unwrap(),
                prefix_len: 24,
                gateway: "203.0.113.1".parse().unwrap(),
                nat: false,
            }),
            ipv6: None,
            dns: Vec::new(),
        };
        s
    }

    #[test]
    fn the_seed_carries_hostname_keys_password_and_static_address() {
        let s = spec();
        let mac = MacAddr([2, 1, 2, 3, 4, 5]);
        let seed = Seed::for_instance(&s, mac);
        let meta: serde_json::Value = serde_json::from_str(&seed.meta_data).unwrap();
        assert_eq!(meta["instance-id"], s.id.to_string());
        assert_eq!(meta["local-hostname"], s.hostname.to_string());
        let body = seed.user_data.strip_prefix("#cloud-config\n").expect("the #cloud-config line first");
        let user: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(user["fqdn"], s.hostname.to_string());
        let root = &user["users"][0];
        assert_eq!(root["name"], "root");
        assert_eq!(root["ssh_authorized_keys"][0], SshPublicKey::parse(KEY).unwrap().to_line());
        assert_eq!(root["hashed_passwd"], s.access.root_password_hash.as_ref().unwrap().as_str());
        assert_eq!((root["lock_passwd"].as_bool(), user["ssh_pwauth"].as_bool()), (Some(false), Some(true)));
        let net: serde_json::Value = serde_json::from_str(&seed.network_config).unwrap();
        let eth = &net["ethernets"]["eth0"];
        assert_eq!(net["version"], 2);
        assert_eq!(eth["match"]["macaddress"], "02:01:02:03:04:05");
        assert_eq!(eth["addresses"][0], "203.0.113.7/24");
        assert_eq!(eth["routes"][0]["via"], "203.0.113.1");

        // No password: root's password stays locked, password logins off.
        let mut keys_only = s.clone();
        keys_only.access.root_password_hash = None;
        let user: serde_json::Value =
            serde_json::from_str(Seed::for_instance(&keys_only, mac).user_data.trim_start_matches("#cloud-config\n")).unwrap();
        assert_eq!((user["users"][0]["lock_passwd"].as_bool(), user["ssh_pwauth"].as_bool()), (Some(true), Some(false)));
        assert!(user["users"][0].get("hashed_passwd").is_none());
    }

    #[test]
    fn the_seed_image_is_an_ext4_labelled_cidata_holding_the_three_files() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("seed.img");
        let seed = Seed::for_instance(&spec(), MacAddr([2, 0, 0, 0, 0, 1]));
        seed.write_image(&img).unwrap();
        let bytes = std::fs::read(&img).unwrap();
        let sb = &bytes[1024..2048];
        assert_eq!(u16::from_le_bytes([sb[56], sb[57]]), 0xef53);
        assert_eq!(&sb[120..126], b"cidata");
        for name in ["meta-data", "user-data", "network-config"] {
            let out = Command::new("debugfs").args(["-R", &format!("cat /{name}")]).arg(&img).output().unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            let want = match name {
                "meta-data" => &seed.meta_data,
                "user-data" => &seed.user_data,
                _ => &seed.network_config,
            };
            assert_eq!(&*text, want.as_str(), "{name}");
        }
    }
}
