-- Images are per node: an image's files are in its node's data dir, so the same name may be
-- on several nodes, each its own. Images made before nodes have node '' until the first
-- node to start claims them (they were that one host's). SQLite is one host: its images
-- stay keyed by name alone.
ALTER TABLE images ADD COLUMN node TEXT NOT NULL DEFAULT '';
{{if eq .Name "pg"}}
--bun:split
ALTER TABLE images DROP CONSTRAINT images_pkey;
--bun:split
ALTER TABLE images ADD PRIMARY KEY (node, name);
{{end}}
