DROP TABLE audit_log;
--bun:split
DROP TABLE registration_tokens;
--bun:split
DROP TABLE api_tokens;
--bun:split
DROP TABLE sessions;
--bun:split
DROP TABLE users;
--bun:split
DROP TABLE vms;
