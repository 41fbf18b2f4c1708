import type { NextConfig } from "next";

const nextConfig: NextConfig = {
  // Every page in StrictMode in development (the default, stated): effects run twice there.
  reactStrictMode: true,
  // `next dev` would otherwise write an AGENTS.md into the example.
  agentRules: false,
  experimental: { agentUpgrade: false },
};

export default nextConfig;
