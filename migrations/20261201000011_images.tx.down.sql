DROP INDEX vms_image;
--bun:split
ALTER TABLE vms DROP COLUMN image;
--bun:split
DROP TABLE images;
