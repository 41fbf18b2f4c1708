import type { NextConfig } from "next";

const nextConfig: NextConfig = {
  // Every page in StrictMode in development (the default, stated): effects run twice there.
  reactStrictMode: true,
};

export default nextConfig;
