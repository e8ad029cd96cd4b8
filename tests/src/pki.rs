//! Certificates for the TLS tests, made by the `openssl` command line: a CA and certificates it signs, each
//! with the extensions a test needs (a server's `subjectAltName`, `extendedKeyUsage=clientAuth`, or none).

use std::path::Path;
use std::process::Command;

/// Runs `openssl` in `dir`; fails the test with openssl's message when it fails.
pub fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").current_dir(dir).args(args).output().expect("openssl");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Makes in `dir` a CA (`{ca}.pem`, `{ca}.key`) and, signed by it, a P-256 certificate per `(name, extensions)`
/// (`{name}.pem`, `{name}.key`; the extensions as an openssl extfile, e.g. `"extendedKeyUsage=clientAuth\n"`),
/// valid for two days.
pub fn pki(dir: &Path, ca: &str, certs: &[(&str, &str)]) {
    let p256 = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
    let (ca_key, ca_pem, ca_subject) = (format!("{ca}.key"), format!("{ca}.pem"), format!("/CN={ca}"));
    let mut req = vec!["req", "-x509"];
    req.extend(p256);
    req.extend(["-keyout", &ca_key, "-out", &ca_pem, "-subj", &ca_subject, "-days", "2"]);
    req.extend(["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign"]);
    openssl(dir, &req);
    for (name, ext) in certs {
        std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
        let (key, csr, pem, extfile, subject) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
            format!("{name}.ext"),
            format!("/CN={name}"),
        );
        let mut req = vec!["req"];
        req.extend(p256);
        req.extend(["-keyout", &key, "-out", &csr, "-subj", &subject]);
        openssl(dir, &req);
        let sign = [
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_pem,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "2",
            "-extfile",
            &extfile,
        ];
        openssl(dir, &sign);
    }
}

/// The extensions of a server certificate for 127.0.0.1.
pub const SERVER: &str = "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n";
/// The extensions of a client certificate.
pub const CLIENT: &str = "extendedKeyUsage=clientAuth\n";
