//! A TCP proxy a test can freeze: the connections through it go silent without closing, as when a
//! network path stalls (a mobile client in a tunnel, a partition between a node and Redis).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// One proxied connection.
#[derive(Default)]
struct Link {
    /// Nothing crosses any more, in either direction, and nothing is closed towards the client.
    frozen: AtomicBool,
}

#[derive(Default)]
struct State {
    links: Mutex<Vec<Arc<Link>>>,
    /// New connections are frozen as soon as they are accepted.
    blackhole: AtomicBool,
    /// Frozen connections whose upstream side was closed by the server.
    closed_by_upstream: AtomicUsize,
}

pub struct Proxy {
    pub addr: SocketAddr,
    state: Arc<State>,
    tasks: Arc<Mutex<JoinSet<()>>>,
}

impl Proxy {
    /// Listens on a random loopback port and forwards every connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State::default());
        let tasks = Arc::new(Mutex::new(JoinSet::new()));
        let (st, ts) = (state.clone(), Arc::downgrade(&tasks));
        tasks.lock().unwrap().spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Some(tasks) = ts.upgrade() else { return };
                let link = Arc::new(Link::default());
                link.frozen
                    .store(st.blackhole.load(Ordering::SeqCst), Ordering::SeqCst);
                st.links.lock().unwrap().push(link.clone());
                let st = st.clone();
                tasks.lock().unwrap().spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    pump(client, server, link, st).await;
                });
            }
        });
        Self { addr, state, tasks }
    }

    /// `http://` URL of the proxy, for Socket.IO clients.
    pub fn http_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `redis://` URL of the proxy.
    pub fn redis_url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// Freezes every current connection for good (what was in flight is lost) and, with
    /// `new_too`, every later one.
    pub fn freeze(&self, new_too: bool) {
        self.state.blackhole.store(new_too, Ordering::SeqCst);
        for link in self.state.links.lock().unwrap().iter() {
            link.frozen.store(true, Ordering::SeqCst);
        }
    }

    /// Lets new connections through again (frozen ones stay frozen): the path has healed, and
    /// whoever gave up on an old connection gets a working one.
    pub fn admit_new(&self) {
        self.state.blackhole.store(false, Ordering::SeqCst);
    }

    /// How many frozen connections the upstream server has closed (e.g. by ping timeout).
    pub fn closed_by_upstream(&self) -> usize {
        self.state.closed_by_upstream.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.tasks.lock().unwrap().abort_all();
    }
}

/// Copies both ways until either side closes, or the link freezes. Frozen, it forwards nothing
/// (what it reads is discarded, checked after each read so nothing read later leaks through)
/// and closes nothing towards the client; it keeps reading the upstream side only to notice
/// the server closing.
async fn pump(client: TcpStream, server: TcpStream, link: Arc<Link>, state: Arc<State>) {
    let (mut client_r, mut client_w) = client.into_split();
    let (mut server_r, mut server_w) = server.into_split();
    let up_link = link.clone();
    let up = async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match client_r.read(&mut buf).await {
                Ok(0) | Err(_) if !up_link.frozen.load(Ordering::SeqCst) => {
                    let _ = server_w.shutdown().await;
                    return;
                }
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if up_link.frozen.load(Ordering::SeqCst) {
                // Silent from here on: stop reading, hold the socket open.
                return std::future::pending::<()>().await;
            }
            if server_w.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    let down = async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match server_r.read(&mut buf).await {
                Ok(0) | Err(_) => {
                    if link.frozen.load(Ordering::SeqCst) {
                        state.closed_by_upstream.fetch_add(1, Ordering::SeqCst);
                        // The client must not see the close either.
                        return std::future::pending::<()>().await;
                    }
                    let _ = client_w.shutdown().await;
                    return;
                }
                Ok(n) => n,
            };
            if link.frozen.load(Ordering::SeqCst) {
                continue;
            }
            if client_w.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    // Both directions must end before the sockets are dropped (a half-closed peer may still
    // be sending the other way).
    tokio::join!(up, down);
}
