/** The gateway.yaml that `mcp-gateway init` writes: small, commented, valid as written. */

export function initTemplate(demoServer: string, node: string): string {
  return `# mcp-gateway configuration. Reference: gateway.example.yaml in the mcp-gateway package.
# \${VAR} is read from the environment when the gateway starts (\${VAR:-default} gives a default).

# One SQLite file holds API keys, the audit chain and usage. Relative paths start at this folder.
database: ./mcp-gateway.db

naming:
  separator: "__"        # agents see tools as <server>__<tool>
  expose: both           # direct (server tools only) | meta (gateway tools only) | both

auth:
  # Keys made with \`mcp-gateway keys create\` are always accepted. Agents pass theirs in
  # MCP_GATEWAY_API_KEY (see \`mcp-gateway claude-config\`).
  anonymous: false       # never true in production: callers without a key would be let in

servers:
  # The demo server shipped with mcp-gateway; replace it with your own.
  - id: demo
    name: Demo shop
    command: ${JSON.stringify(node)}
    args: [${JSON.stringify(demoServer)}]
    # env:                # secrets for this server only; never shown to agents
    #   API_TOKEN: \${DEMO_API_TOKEN}
    start: eager
    timeoutMs: 30000
    sandbox: auto         # on Linux: its own user, pid and mount namespaces (it cannot read the
                          # gateway's environment or database); \`check\` shows the isolation
    protocol: legacy      # the MCP era it speaks: legacy (2025) | modern (2026-07-28) | auto (probed once)
    # prefix: shop        # agents would see shop__<tool>; "" shows its own names
    # roots:              # its roots, answered by the gateway (else asked of the calling agent)
    #   - { uri: "file:///srv/shop", name: shop }
  # - id: github
  #   command: npx
  #   args: [-y, "@modelcontextprotocol/server-github"]
  #   env: { GITHUB_PERSONAL_ACCESS_TOKEN: \${GITHUB_TOKEN} }

# Default deny: a caller may use only what a policy of one of its roles allows.
# In each policy the first matching rule decides; a matching "forbid" in any policy wins.
policies:
  - id: reader
    roles: [reader]
    rules:
      - tool: "refund_*"   # globs match the server's own tool names
        action: forbid
      - tool: "{get,lookup,list,search}_*"
        action: allow
      - server: demo
        tool: echo
        action: allow
  - id: admin
    roles: [admin]
    rules:
      - action: allow      # every tool of every server
      - server: gateway    # and the gateway's own tools (status, audit, usage)
        action: allow

rateLimit:
  enabled: true
  defaultPerMinute: 60   # one bucket per consumer
  rules:
    - server: demo
      tool: "refund_*"
      perMinute: 5

audit:
  enabled: true
  hashChain: true
  # hmacKeyEnv: MCP_GATEWAY_AUDIT_KEY   # HMAC the chain: rewriting it then needs this secret
  redactKeys: [password, token, secret, apiKey, authorization]

# log: { level: info, format: json }     # json: one JSON object a line on stderr
# metrics:                               # /metrics (Prometheus), /healthz, /readyz
#   listen: 127.0.0.1:9464
# http:                                  # a shared gateway: \`serve --http\`, Streamable HTTP at /mcp,
#   listen: 127.0.0.1:8080               # Authorization: Bearer <key or JWT> on every request
#   allowedHosts: [mcp.example.com]
`;
}
