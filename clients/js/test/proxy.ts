// A TCP proxy between a client and the server, to break the connection on purpose: cut it, keep
// it down for a while, let requests through while swallowing the answers, or freeze it (a
// partition: nothing crosses, nothing closes). It proxies any TCP service, Redis too.

import { createServer, connect, type Server, type Socket } from "node:net";

export class Proxy {
  port = 0;
  private server: Server | undefined;
  private readonly pairs = new Set<[Socket, Socket]>();
  private refusing = false;
  /** While true, bytes from the server are dropped (requests arrive, answers don't). */
  blackhole = false;
  /** While true, nothing crosses in either direction, on open and new connections alike. */
  private frozen = false;
  /** While set, bytes from the server are kept back (a slow downlink), to be delivered later. */
  private held: { socket: Socket; data: Buffer }[] | undefined;
  /** TCP connections accepted so far (refused ones too): connection attempts, as the server sees them. */
  connections = 0;

  constructor(private readonly targetPort: number) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async start(): Promise<this> {
    this.server = createServer((client) => {
      this.connections++;
      if (this.refusing) {
        client.destroy();
        return;
      }
      const upstream = connect(this.targetPort, "127.0.0.1");
      const pair: [Socket, Socket] = [client, upstream];
      this.pairs.add(pair);
      client.on("data", (d) => {
        if (!this.frozen) upstream.write(d);
      });
      upstream.on("data", (d) => {
        if (this.blackhole || this.frozen) return;
        if (this.held) this.held.push({ socket: client, data: d });
        else client.write(d);
      });
      const close = () => {
        client.destroy();
        upstream.destroy();
        this.pairs.delete(pair);
      };
      client.on("close", close);
      upstream.on("close", close);
      client.on("error", close);
      upstream.on("error", close);
    });
    await new Promise<void>((done) => this.server?.listen(0, "127.0.0.1", done));
    const address = this.server.address();
    this.port = typeof address === "object" && address ? address.port : 0;
    return this;
  }

  /** Breaks every open connection (no close handshake: like a network failure). */
  cut(): void {
    for (const [a, b] of this.pairs) {
      a.resetAndDestroy();
      b.destroy();
    }
    this.pairs.clear();
  }

  /** Drops whatever either side sends from now on, and closes nothing: a network partition. */
  freeze(): void {
    this.frozen = true;
  }

  /** Keeps back what the server sends (answers arrive late, in order) until `deliver()`. */
  holdReplies(): void {
    this.held ??= [];
  }

  /** Bytes from the server kept back by `holdReplies()`. */
  get heldBytes(): number {
    return (this.held ?? []).reduce((n, h) => n + h.data.length, 0);
  }

  /** Delivers what was kept back, in order, and stops holding. */
  deliver(): void {
    const held = this.held ?? [];
    this.held = undefined;
    for (const { socket, data } of held) if (!socket.destroyed) socket.write(data);
  }

  /** Cuts and refuses new connections until `up()`. */
  down(): void {
    this.refusing = true;
    this.cut();
  }

  up(): void {
    this.refusing = false;
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((done) => (this.server ? this.server.close(() => done()) : done()));
  }
}
