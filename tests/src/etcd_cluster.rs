//! A multi-member etcd (one quorum) on free loopback ports, each member a child
//! of the test process: what losing etcd's quorum looks like to the agents.
//!
//! Rule: the fixture owns the members; `Drop` kills and reaps every one of
//! them, paused or not. Pausing a majority (SIGSTOP) loses the quorum without
//! losing data: the member left running answers nothing that needs consensus,
//! and the agents see timeouts, as in a real outage. Keys go through
//! [`EtcdCluster::client`], over the members still running.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::dirs::make_shared_dir;
use crate::etcd::{self, is_healthy, spawn_member, EtcdClient};
use crate::ports::free_port;
use crate::proc::{kill_child, signal};

/// How long the members may take to elect a leader.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// One member: its ports, directory and (while running) its process.
#[derive(Debug)]
struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    data_dir: PathBuf,
    log_path: PathBuf,
    child: Option<Child>,
    paused: bool,
}

/// A running etcd cluster of N members (`etcd0` .. `etcd<n-1>`).
#[derive(Debug)]
pub struct EtcdCluster {
    members: Vec<Member>,
    token: String,
}

impl EtcdCluster {
    /// Start `n` members with data and logs in `<dir>/etcd<i>` and
    /// `<dir>/etcd<i>.log`; returns once every member reports healthy (a
    /// leader is elected).
    pub async fn start(dir: &Path, n: usize) -> EtcdCluster {
        make_shared_dir(dir);
        let members: Vec<Member> = (0..n)
            .map(|i| Member {
                name: format!("etcd{i}"),
                client_port: free_port(),
                peer_port: free_port(),
                data_dir: dir.join(format!("etcd{i}")),
                log_path: dir.join(format!("etcd{i}.log")),
                child: None,
                paused: false,
            })
            .collect();
        let token = format!("agent-chaos-{}", members[0].client_port);
        let mut cluster = EtcdCluster { members, token };
        for i in 0..n {
            cluster.spawn(i, "new");
        }
        cluster.wait_healthy(START_TIMEOUT).await;
        cluster
    }

    fn initial_cluster(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn spawn(&mut self, i: usize, state: &str) {
        let initial_cluster = self.initial_cluster();
        let m = &mut self.members[i];
        m.child = Some(spawn_member(&etcd::Member {
            name: &m.name,
            client_port: m.client_port,
            peer_port: m.peer_port,
            data_dir: &m.data_dir,
            log_path: &m.log_path,
            initial_cluster: &initial_cluster,
            state,
            token: &self.token,
            tls: None,
        }));
        m.paused = false;
    }

    /// Wait until every running member reports healthy; panics after `timeout`
    /// with the tail of the logs.
    pub async fn wait_healthy(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let mut all = true;
            for i in 0..self.members.len() {
                let m = &mut self.members[i];
                let Some(child) = m.child.as_mut() else {
                    continue;
                };
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "{} exited ({status}); last lines of {}:\n{}",
                        m.name,
                        m.log_path.display(),
                        crate::logs::tail(&m.log_path, 40)
                    );
                }
                if !self.is_healthy(i).await {
                    all = false;
                }
            }
            if all {
                return;
            }
            if Instant::now() >= deadline {
                let tails: String = self
                    .members
                    .iter()
                    .map(|m| {
                        format!(
                            "--- {}:\n{}\n",
                            m.log_path.display(),
                            crate::logs::tail(&m.log_path, 20)
                        )
                    })
                    .collect();
                panic!("etcd cluster not healthy after {timeout:?}:\n{tails}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// `127.0.0.1:<client port>` of member `i`, the form `etcd3.hosts` takes.
    pub fn endpoint(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.members[i].client_port)
    }

    /// Every member's endpoint.
    pub fn endpoints(&self) -> Vec<String> {
        (0..self.members.len()).map(|i| self.endpoint(i)).collect()
    }

    /// The log file of member `i`.
    pub fn log_path(&self, i: usize) -> &Path {
        &self.members[i].log_path
    }

    /// Freeze member `i` (SIGSTOP): its connections stay open, nothing answers.
    pub fn pause(&mut self, i: usize) {
        let m = &mut self.members[i];
        if let Some(c) = &m.child {
            signal(c.id() as i32, Signal::SIGSTOP);
            m.paused = true;
        }
    }

    /// Undo [`EtcdCluster::pause`] (SIGCONT).
    pub fn resume(&mut self, i: usize) {
        let m = &mut self.members[i];
        if let Some(c) = &m.child {
            signal(c.id() as i32, Signal::SIGCONT);
        }
        m.paused = false;
    }

    /// Resume every paused member.
    pub fn resume_all(&mut self) {
        for i in 0..self.members.len() {
            if self.members[i].paused {
                self.resume(i);
            }
        }
    }

    /// SIGKILL member `i` (data kept; [`EtcdCluster::restart`] brings it back).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            kill_child(&mut c);
        }
        self.members[i].paused = false;
    }

    /// Start member `i` again on its ports and data (after [`EtcdCluster::kill`]).
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        self.spawn(i, "existing");
    }

    /// True when member `i` answers `GET /health` with `{"health":"true"}`.
    pub async fn is_healthy(&self, i: usize) -> bool {
        is_healthy(&self.endpoint(i)).await
    }

    /// A key client over the members running and not paused, in order.
    pub fn client(&self) -> EtcdClient {
        EtcdClient::new(
            (0..self.members.len())
                .filter(|i| self.members[*i].child.is_some() && !self.members[*i].paused)
                .map(|i| self.endpoint(i))
                .collect(),
        )
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}
