-- Back to one image per name: where several nodes had one, the first node's record stays
-- (the files on the others are left in their data dirs).
{{if eq .Name "pg"}}
DELETE FROM images a USING images b WHERE a.name = b.name AND a.node > b.node;
--bun:split
ALTER TABLE images DROP CONSTRAINT images_pkey;
--bun:split
ALTER TABLE images ADD PRIMARY KEY (name);
--bun:split
{{end}}
ALTER TABLE images DROP COLUMN node;
