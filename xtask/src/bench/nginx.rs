//! A real web server for the ordinary-traffic loads: Debian's nginx-light,
//! unprivileged workers, a private configuration and document root, inside
//! the bench namespace and pinned to CPU 1 (the load generator takes CPU 0).

use std::{
    net::{Ipv4Addr, SocketAddrV4, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use super::{netns::in_netns, tracer::pin};

/// Where nginx listens, inside the bench namespace.
pub(super) const PORT: u16 = 8080;

pub(super) struct Nginx {
    child: Child,
    dir: PathBuf,
}

/// The page every request fetches: small, so that the kernel's work per
/// connection, not copying, dominates.
const PAGE: &str = "<html><body>rsttrace bench</body></html>\n";

fn config(dir: &std::path::Path) -> String {
    let d = dir.display();
    format!(
        "worker_processes 1;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
         events {{ worker_connections 4096; }}\n\
         http {{\n  access_log off;\n  keepalive_requests 1000000;\n  \
         client_body_temp_path {d}/tmp;\n  proxy_temp_path {d}/tmp;\n  \
         fastcgi_temp_path {d}/tmp;\n  uwsgi_temp_path {d}/tmp;\n  scgi_temp_path {d}/tmp;\n  \
         server {{ listen 127.0.0.1:{PORT}; root {d}/www; }}\n}}\n"
    )
}

impl Nginx {
    /// Starts nginx in namespace `netns` and waits until it accepts.
    pub(super) fn start(netns: &str, dir: PathBuf) -> Result<Nginx> {
        std::fs::create_dir_all(dir.join("www"))?;
        std::fs::create_dir_all(dir.join("tmp"))?;
        std::fs::write(dir.join("www/index.html"), PAGE)?;
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, config(&dir))?;
        let mut c = Command::new("ip");
        c.args(["netns", "exec", netns, "nginx", "-c"])
            .arg(&conf)
            .arg("-p")
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        pin(&mut c, 1);
        let child = c
            .spawn()
            .context("starting nginx (scripts/bootstrap.sh --with-bench installs nginx-light)")?;
        let mut n = Nginx { child, dir };
        n.wait_ready(netns)?;
        Ok(n)
    }

    fn wait_ready(&mut self, netns: &str) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, PORT);
        loop {
            if in_netns(netns, move || TcpStream::connect(addr).is_ok())? {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                let log = std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default();
                bail!("nginx exited ({status}): {}", log.trim());
            }
            if Instant::now() > deadline {
                bail!("nginx did not accept on 127.0.0.1:{PORT} within 10 s");
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    pub(super) fn url(&self) -> String {
        format!("http://127.0.0.1:{PORT}/")
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SAFETY: signalling our own child (`ip netns exec` execs nginx,
        // so this is nginx's master, which stops its worker on SIGTERM).
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
